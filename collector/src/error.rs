//! The one error type handlers return: client errors are answered with a JSON explanation,
//! internal ones are logged and answered 500 without details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// What went wrong with a request.
#[derive(Debug)]
pub enum AppError {
    /// 400: the request is malformed; `field` names where.
    BadRequest {
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// 401: a key is missing or wrong.
    Unauthorized(&'static str),
    /// 403: the origin is not allowed.
    Forbidden(&'static str),
    /// 403: the request is authenticated but may not do this (field, reason).
    Denied(&'static str, &'static str),
    /// 404: no such site, click or file.
    NotFound(&'static str, &'static str),
    /// 405: the path exists, not with this method.
    MethodNotAllowed,
    /// 408: the body did not arrive within this many milliseconds.
    BodyTimeout(u64),
    /// 413: the body is larger than the limit.
    TooLarge(usize),
    /// 415: not `text/plain` or `application/json`.
    UnsupportedMediaType,
    /// 429: rate limited; retry after this many seconds.
    TooManyRequests(u64),
    /// 503: shutting down.
    Unavailable,
    /// 503: the database cannot be reached just now (logged with this text); the tag retries.
    StoreUnreachable(String),
    /// 500: a failure on our side, logged with this text.
    Internal(String),
}

impl AppError {
    /// A 400 for a field and reason.
    pub fn bad(field: &str, reason: &str) -> AppError {
        AppError::BadRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The status code it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Denied(..) => StatusCode::FORBIDDEN,
            AppError::NotFound(..) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable | AppError::StoreUnreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    /// A store's error: 503 while the database is out of reach (the tag retries), else 500.
    fn from(e: crate::store::StoreError) -> AppError {
        if e.is_unavailable() {
            AppError::StoreUnreachable(e.0)
        } else {
            AppError::Internal(e.0)
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (error, field): (String, Option<String>) = match &self {
            AppError::BadRequest { field, reason } => (reason.clone(), Some(field.clone())),
            AppError::Unauthorized(field) => ("missing or wrong key".into(), Some((*field).into())),
            AppError::Forbidden(field) => ("origin not allowed".into(), Some((*field).into())),
            AppError::Denied(field, reason) => ((*reason).into(), Some((*field).into())),
            AppError::NotFound(what, field) => (format!("unknown {what}"), Some((*field).into())),
            AppError::MethodNotAllowed => ("method not allowed on this path".into(), Some("method".into())),
            AppError::BodyTimeout(ms) => (format!("body not received within {ms} ms"), Some("body".into())),
            AppError::TooLarge(limit) => (format!("body larger than {limit} bytes"), Some("body".into())),
            AppError::UnsupportedMediaType => (
                "content type must be text/plain or application/json".into(),
                Some("content-type".into()),
            ),
            AppError::TooManyRequests(_) => ("too many requests".into(), None),
            AppError::Unavailable => ("shutting down, retry later".into(), None),
            AppError::StoreUnreachable(detail) => {
                tracing::warn!(error = %detail, "the database is unreachable: answered 503");
                ("the database is unreachable, retry later".into(), None)
            }
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                ("internal error".into(), None)
            }
        };
        let mut body = serde_json::json!({ "error": error });
        if let Some(f) = field {
            body["field"] = f.into();
        }
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        let retry = match self {
            AppError::TooManyRequests(s) => Some(s),
            AppError::Unavailable => Some(5),
            AppError::StoreUnreachable(_) => Some(2),
            _ => None,
        };
        if let Some(s) = retry {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
