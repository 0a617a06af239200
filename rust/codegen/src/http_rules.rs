//! What the HTTP/JSON surface does that a `google.api.http` option cannot say, as one table.
//!
//! The option gives each rpc its method, path template and body. The rest of the contract's
//! HTTP behaviour is here, one row per rpc that has the option, and nowhere else: the success
//! status when it is not 200 (201 for sign-up, 204 for answers without a body), who must
//! present a bearer token (and the logout fallback: the bearer token is the one revoked when
//! the body names none), and the error statuses the rpc answers with. The OpenAPI document and
//! the generated routes ([`crate::gateway`]) are written from it.
//!
//! The generator refuses a proto whose HTTP rpcs and this table disagree: an rpc with a
//! `google.api.http` option and no row, or a row for an rpc without one.
//!
//! Statuses every operation can answer are not repeated in the rows; [`common_errors`] adds
//! them: 503 (`UNAVAILABLE`: a database or auth-service does not answer) and 504
//! (`DEADLINE_EXCEEDED`: past `GRIMOS_REQUEST_TIMEOUT`) everywhere, 401 wherever a bearer
//! token is read, and 408 and 413 wherever a body is read.

/// The HTTP behaviour of one rpc beyond its `google.api.http` option.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The rpc, fully qualified: `grimos.user.v1.UserService.CreateUser`.
    pub rpc: &'static str,
    /// What a success answers.
    pub success: Success,
    /// Who may call it.
    pub auth: Auth,
    /// The error statuses particular to this rpc (see [`common_errors`] for the rest).
    pub errors: &'static [u16],
}

/// The answer to a successful call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// 200 with the response message as JSON.
    Ok,
    /// 201 with the response message as JSON: the call created a resource.
    Created,
    /// 204 and no body: the response message carries nothing an HTTP client needs.
    NoContent,
}

impl Success {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::Created => 201,
            Self::NoContent => 204,
        }
    }
}

/// Who may call an rpc over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone: no token is read.
    Public,
    /// `Authorization: Bearer <access token>` is required.
    Bearer,
    /// The token to act on comes from the body, or, when the body names none, from
    /// `Authorization: Bearer`; neither is 401 (`POST /v1/auth/logout`).
    BodyOrBearer,
}

/// The table: one row per rpc with a `google.api.http` option.
pub const RULES: &[Rule] = &[
    Rule {
        rpc: "grimos.user.v1.UserService.CreateUser",
        success: Success::Created,
        auth: Auth::Public,
        errors: &[400, 409, 429],
    },
    Rule {
        rpc: "grimos.user.v1.UserService.GetUser",
        success: Success::Ok,
        auth: Auth::Bearer,
        errors: &[400, 403, 404],
    },
    Rule {
        rpc: "grimos.user.v1.UserService.GetCurrentUser",
        success: Success::Ok,
        auth: Auth::Bearer,
        errors: &[404],
    },
    Rule {
        rpc: "grimos.user.v1.UserService.UpdateUser",
        success: Success::Ok,
        auth: Auth::Bearer,
        errors: &[400, 403, 404],
    },
    Rule {
        rpc: "grimos.user.v1.UserService.DeleteUser",
        success: Success::NoContent,
        auth: Auth::Bearer,
        errors: &[400, 403, 404],
    },
    Rule {
        rpc: "grimos.user.v1.UserService.ListUsers",
        success: Success::Ok,
        auth: Auth::Bearer,
        errors: &[400, 403],
    },
    Rule {
        rpc: "grimos.auth.v1.AuthService.Login",
        success: Success::Ok,
        auth: Auth::Public,
        errors: &[400, 401, 429],
    },
    Rule {
        rpc: "grimos.auth.v1.AuthService.RefreshToken",
        success: Success::Ok,
        auth: Auth::Public,
        errors: &[400, 401],
    },
    Rule {
        // The session id in RevokeTokenResponse is for services; an HTTP logout needs none.
        rpc: "grimos.auth.v1.AuthService.RevokeToken",
        success: Success::NoContent,
        auth: Auth::BodyOrBearer,
        errors: &[400],
    },
    Rule {
        rpc: "grimos.auth.v1.AuthService.ChangePassword",
        success: Success::Ok,
        auth: Auth::Bearer,
        errors: &[400, 401, 429],
    },
];

/// The row for `rpc` (`pkg.Service.Method`).
pub fn rule(rpc: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.rpc == rpc)
}

/// Every error status of an operation: its row's, and those common to all operations of its
/// kind, in ascending order.
pub fn errors(rule: &Rule, has_body: bool) -> Vec<u16> {
    let mut statuses: Vec<u16> = rule.errors.to_vec();
    statuses.extend(common_errors(rule.auth, has_body));
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// The error statuses every operation with this auth and body can answer.
pub fn common_errors(auth: Auth, has_body: bool) -> Vec<u16> {
    let mut statuses = vec![503, 504];
    if auth != Auth::Public {
        statuses.push(401);
    }
    if has_body {
        statuses.extend([400, 408, 413]);
    }
    statuses
}

/// The gRPC code behind an HTTP error status, and what it means here; the contract's mapping
/// (`grimos_proto::gateway::http_status`) read backwards, plus the transport's own 408
/// and 413.
pub fn error_meaning(status: u16) -> Option<(&'static str, &'static str)> {
    Some(match status {
        400 => (
            "INVALID_ARGUMENT (3)",
            "The request breaks the input rules, or its body, path or query is malformed; \
             `google.rpc.BadRequest` in `details` names each field.",
        ),
        401 => (
            "UNAUTHENTICATED (16)",
            "No valid token: missing, malformed, expired or revoked, or wrong credentials.",
        ),
        403 => (
            "PERMISSION_DENIED (7)",
            "The caller's roles do not allow this (another user's profile without `admin`).",
        ),
        404 => ("NOT_FOUND (5)", "No such user."),
        408 => (
            "DEADLINE_EXCEEDED (4)",
            "The request body did not arrive within `GRIMOS_BODY_READ_TIMEOUT`.",
        ),
        409 => ("ALREADY_EXISTS (6)", "An account with this email exists."),
        413 => (
            "INVALID_ARGUMENT (3)",
            "The request body is larger than 64 KiB.",
        ),
        429 => (
            "RESOURCE_EXHAUSTED (8)",
            "Too many attempts or too much load; `google.rpc.RetryInfo` in `details`, when \
             present, says when to retry.",
        ),
        503 => (
            "UNAVAILABLE (14)",
            "A database or auth-service does not answer; retry later.",
        ),
        504 => (
            "DEADLINE_EXCEEDED (4)",
            "The request took longer than `GRIMOS_REQUEST_TIMEOUT`.",
        ),
        _ => return None,
    })
}
