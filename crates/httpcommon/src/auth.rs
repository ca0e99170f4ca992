//! The actix side of authentication: a middleware that runs the shared
//! [`Authenticator`] on every request, and the [`Authenticated`] extractor that
//! hands the user to handlers.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use pincluster_auth::{AuthError, AuthUser, Challenge};

use crate::limits::too_many;
use crate::ratelimit::address_key;
use crate::server::Context;

/// The realm IPFS Cluster clients know.
const REALM: &str = "Restricted IPFS Cluster API";

/// The user a request was authenticated as. Taking it as a handler argument
/// makes the need for authentication visible in the signature.
#[derive(Clone, Debug)]
pub struct Authenticated(pub AuthUser);

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let user = req.extensions().get::<Authenticated>().cloned();
        ready(user.ok_or_else(|| {
            // Only reachable for routes that bypass the middleware; refuse them.
            actix_web::error::ErrorUnauthorized("unauthorized: no auth provided")
        }))
    }
}

/// Whether a request may pass without credentials: CORS preflights, health
/// checks and the dashboard's static files (its data routes, under
/// `/ui/api/`, are authenticated like any other).
fn bypasses_auth(req: &ServiceRequest, context: &Context) -> bool {
    let path = req.path();
    let static_ui = (path == "/ui" || path.starts_with("/ui/")) && !path.starts_with("/ui/api/");
    req.method() == Method::OPTIONS
        || ((req.method() == Method::GET || req.method() == Method::HEAD)
            && (path == "/health" || static_ui || (path == "/metrics" && context.open_metrics)))
}

pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(context) = req.app_data::<web::Data<Context>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError("authentication is not configured"));
    };
    if bypasses_auth(&req, &context) {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    // An address that failed too often is not even checked: a guess that
    // happens to be right gets the same 429 as the wrong ones.
    let address = req.peer_addr().map(|peer| address_key(peer.ip()));
    if let Some(wait) = address.and_then(|address| context.auth_failures.check(&address, false).err()) {
        return Ok(req.into_response(too_many(&context, "auth_failures", wait)));
    }
    let headers = req.headers().get_all(header::AUTHORIZATION).filter_map(|v| v.to_str().ok());
    match context.auth.authenticate(headers) {
        Ok(user) => {
            if !user.is_anonymous() {
                if let Err(wait) = context.by_user.check(&Arc::from(user.name()), true) {
                    return Ok(req.into_response(too_many(&context, "user", wait)));
                }
            }
            req.extensions_mut().insert(Authenticated(user));
            next.call(req).await.map(ServiceResponse::map_into_boxed_body)
        }
        Err(error) => {
            // Only wrong credentials count: a request without any guesses nothing.
            if let (Some(address), false) = (address, matches!(error, AuthError::NoCredentials)) {
                let _ = context.auth_failures.check(&address, true);
            }
            tracing::debug!(path = req.path(), %error, "request refused");
            let reason = match error {
                AuthError::NoCredentials => "no_credentials",
                AuthError::BadBasic => "wrong_user_or_password",
                AuthError::InvalidToken(_) => "invalid_token",
                AuthError::Disabled => "disabled",
            };
            metrics::counter!(crate::observe::AUTH_FAILURES, "api" => context.name, "reason" => reason).increment(1);
            let response = unauthorized(&context, &error);
            Ok(req.into_response(response))
        }
    }
}

/// The 401 answer for a failed authentication, with the challenges Cluster sends.
pub(crate) fn unauthorized(context: &Context, error: &AuthError) -> HttpResponse {
    let message = match error {
        AuthError::NoCredentials => "unauthorized: no auth provided",
        AuthError::InvalidToken(_) => "unauthorized: invalid token",
        _ => "unauthorized: access denied",
    };
    let mut response = (context.render_error)(StatusCode::UNAUTHORIZED, message);
    let bearer = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"");
    let bearer_plain = format!("Bearer realm=\"{REALM}\"");
    let basic = format!("Basic realm=\"{REALM}\"");
    let challenges: Vec<String> = match error.challenge() {
        Challenge::Basic => vec![basic],
        Challenge::Bearer => vec![bearer],
        Challenge::Both => vec![bearer_plain, basic],
    };
    for challenge in challenges {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}
