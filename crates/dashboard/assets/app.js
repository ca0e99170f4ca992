// The dashboard's entry point: the sign-in form, the session (who is signed in, whether an admin),
// the message line every module reports to, and starting or stopping the panels.

import * as admin from './admin.js';
import * as http from './http.js';
import * as pins from './pins.js';
import { byId } from './util.js';

/** Shows `text` in the page's live message line; kind is info, success or error. */
function notify(text, kind = 'info') {
  const message = byId('message');
  message.textContent = text;
  message.dataset.kind = kind;
}

/** Who the token belongs to; if the session route fails for another reason than 401, a plain user. */
async function loadSession(typedUser) {
  try {
    const session = await http.request('GET', '/ui/api/session');
    return { user: String(session?.user ?? typedUser), admin: session?.admin === true };
  } catch (error) {
    if (error.status === 401) throw error;
    return { user: typedUser, admin: false };
  }
}

async function signIn(event) {
  event.preventDefault();
  const user = byId('signin-user').value.trim();
  const password = byId('signin-password');
  const submit = byId('signin-submit');
  submit.disabled = true;
  try {
    await http.signIn(user, password.value);
    const session = await loadSession(user);
    password.value = '';
    show(session);
    notify(`Signed in as ${session.user}.`, 'success');
  } catch (error) {
    http.signOut();
    notify(error.status === 401 ? 'Wrong user name or password.' : `Could not sign in: ${error.message}`, 'error');
    password.focus();
    password.select();
  } finally {
    submit.disabled = false;
  }
}

function show(session) {
  byId('signin').hidden = true;
  byId('dashboard').hidden = false;
  byId('account').hidden = false;
  byId('whoami').textContent = session.admin ? `${session.user} (admin)` : session.user;
  pins.start();
  if (session.admin) admin.start();
  byId('pin-cid').focus();
}

/** Forgets the token and goes back to the sign-in form. */
function signOut(message) {
  http.signOut();
  pins.stop();
  admin.stop();
  byId('dashboard').hidden = true;
  byId('account').hidden = true;
  byId('whoami').textContent = '';
  byId('signin').hidden = false;
  byId('signin-form').reset();
  byId('signin-user').focus();
  notify(message, 'info');
}

function main() {
  pins.init({ notify });
  http.setExpiredHandler(() => signOut('Your session ended (token expired or revoked). Sign in again.'));
  byId('signin-form').addEventListener('submit', signIn);
  byId('signout').addEventListener('click', () => signOut('Signed out.'));
  byId('signin-user').focus();
}

main();
