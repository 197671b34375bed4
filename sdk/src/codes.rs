//! The JSON-RPC error codes this crate answers with, in one place: the HTTP layer's
//! bodies, the wrapper's errors and the audit log's refusals all take them from here.
//! All are in JSON-RPC 2.0's implementation-defined server-error range.

use rmcp::model::ErrorCode;

/// An authorization denial. Not -32001, which the MCP SDKs use for their request timeouts.
pub const FORBIDDEN: ErrorCode = ErrorCode(-32003);

/// A request without a (valid) access token.
pub const UNAUTHENTICATED: ErrorCode = ErrorCode(-32004);

/// A request refused because it cannot be audited: the audit log is failing under
/// `fail_closed`, or its queue is full under
/// [`Overload::Refuse`](crate::audit::Overload::Refuse).
pub const AUDIT_UNAVAILABLE: ErrorCode = ErrorCode(-32005);

/// JSON-RPC's own code for a request that is not a valid request object.
#[cfg(feature = "http")]
pub(crate) const INVALID_REQUEST: ErrorCode = ErrorCode(-32600);
