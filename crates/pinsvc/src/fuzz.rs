//! Entry points for the fuzz targets of `crates/fuzz` (feature `fuzzing`, off by default): the
//! `GET /pins` query string and the `Pin` body of `POST /pins`, on untrusted bytes. A panic, a
//! hang or an unbounded allocation in here is a bug in the parser.

/// The query string of `GET /pins` (as actix hands it over: text).
pub fn query(data: &[u8]) {
    if let Ok(raw) = std::str::from_utf8(data) {
        let _ = crate::query::parse(raw).map(|q| crate::query::bounded_by_page(&q));
    }
}

/// The JSON body of `POST /pins` and `POST /pins/{requestid}`, read and turned into a pin.
pub fn pin_body(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = crate::wire::PinBody::from_value(value).and_then(|body| body.into_domain((-1, -1)));
}
