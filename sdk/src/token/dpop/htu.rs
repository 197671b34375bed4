//! How RFC 9449 compares a proof's `htu` with the request's URL: without query and
//! fragment, the scheme and host in any case, a default port dropped.

/// Whether `a` and `b` name the same URL as RFC 9449 compares `htu` (see
/// [`normalize_htu`]); allocates only when they differ as written.
pub(super) fn same_htu(a: &str, b: &str) -> bool {
    fn plain(u: &str) -> &str {
        let end = u.bytes().position(|c| c == b'?' || c == b'#');
        &u[..end.unwrap_or(u.len())]
    }
    plain(a) == plain(b) || normalize_htu(a) == normalize_htu(b)
}

/// `url` as RFC 9449 compares `htu`: without query and fragment, the scheme and host in
/// lower case, the scheme's default port dropped, an empty path as `/`.
pub fn normalize_htu(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let authority = match authority.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() => host.to_owned(),
        _ => authority,
    };
    format!("{scheme}://{authority}{path}")
}
