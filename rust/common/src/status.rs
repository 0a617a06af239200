//! The status shapes both services give: bad input as `INVALID_ARGUMENT` with details.

/// `INVALID_ARGUMENT` carrying the violations as `google.rpc.BadRequest` details, with a
/// message that lists them: the one shape both services give bad input.
pub fn invalid_argument_status(violations: Vec<tonic_types::FieldViolation>) -> tonic::Status {
    use tonic_types::StatusExt as _;
    let summary = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    tonic::Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid argument: {summary}"),
        tonic_types::ErrorDetails::with_bad_request(violations),
    )
}
