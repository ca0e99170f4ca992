// The one door to the daemon's API: signs in for a token, keeps it in this module's memory only
// (never in storage or cookies, so closing the tab forgets it), and turns error bodies into ApiError.

let token = null;
let onExpired = () => {};

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** Called when a request with a token is refused with 401 (expired, revoked, password changed). */
export function setExpiredHandler(handler) {
  onExpired = handler;
}

export function signedIn() {
  return token !== null;
}

/** Exchanges user and password for a token (POST /token with Basic auth). */
export async function signIn(user, password) {
  const response = await send('/token', {
    method: 'POST',
    headers: { Authorization: `Basic ${base64(`${user}:${password}`)}` },
  });
  const body = await parse(response);
  if (!response.ok) throw failure(response, body);
  if (!body || typeof body.token !== 'string') throw new ApiError(response.status, 'The server sent no token.');
  token = body.token;
}

export function signOut() {
  token = null;
}

/** Sends an authenticated request; resolves to the parsed JSON body (null when empty). */
export async function request(method, path, body) {
  if (token === null) throw new ApiError(401, 'Not signed in.');
  const sent = token;
  const headers = { Authorization: `Bearer ${sent}`, Accept: 'application/json' };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  const parsed = await parse(response);
  if (response.ok) return parsed;
  // Only the token of this request expired: a newer sign-in keeps its own.
  if (response.status === 401 && token === sent) {
    token = null;
    onExpired();
  }
  throw failure(response, parsed);
}

async function send(path, init) {
  try {
    // `credentials: 'omit'`: no cookies, and no browser login prompt on a 401's Basic challenge.
    return await fetch(path, { ...init, credentials: 'omit', cache: 'no-store', redirect: 'error' });
  } catch {
    throw new ApiError(0, 'Cannot reach the server.');
  }
}

async function parse(response) {
  const text = await response.text().catch(() => '');
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The spec's failure body is {"error":{"reason","details"}}; fall back to the status line. */
function failure(response, body) {
  const error = body && typeof body === 'object' ? body.error : null;
  const message =
    (error && (error.details || error.reason)) ||
    (typeof body === 'string' && body.trim()) ||
    `${response.status} ${response.statusText}`.trim();
  return new ApiError(response.status, String(message));
}

/** Base64 of the UTF-8 bytes (btoa alone accepts only Latin-1). */
function base64(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}
