//! Framing of the command channel between the sidecar and the dataplane
//! (`tapline/v1/dataplane.proto`): each message is a 4-byte little-endian
//! length followed by the encoded message. Blocking I/O; the sidecar's
//! async client frames the same way with [`encode_frame`] and
//! [`decode_len`].

use std::io::{self, Read, Write};

use prost::Message;

/// File name of the dataplane's command socket inside `state_dir`.
pub const SOCKET_NAME: &str = "control.sock";
/// Largest message either side accepts; a larger length prefix is an error
/// (a peer speaking another protocol, or a corrupt stream).
pub const MAX_FRAME: usize = 4 << 20;

/// The message, length-prefixed, ready to write.
pub fn encode_frame<M: Message>(msg: &M) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(&mut buf)
        .expect("a Vec grows to fit the message");
    buf
}

/// The body length announced by a 4-byte prefix, checked against
/// [`MAX_FRAME`].
pub fn decode_len(prefix: [u8; 4]) -> io::Result<usize> {
    decode_len_max(prefix, MAX_FRAME)
}

/// The body length announced by a 4-byte prefix, checked against `max`.
pub fn decode_len_max(prefix: [u8; 4], max: usize) -> io::Result<usize> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("command frame of {len} bytes is larger than the limit of {max}"),
        ));
    }
    Ok(len)
}

/// Writes one framed message.
pub fn write_frame<M: Message, W: Write>(w: &mut W, msg: &M) -> io::Result<()> {
    w.write_all(&encode_frame(msg))?;
    w.flush()
}

/// Reads one framed message. `Ok(None)` when the peer closed the connection
/// cleanly before a new frame.
pub fn read_frame<M: Message + Default, R: Read>(r: &mut R) -> io::Result<Option<M>> {
    read_frame_max(r, MAX_FRAME)
}

/// [`read_frame`] with a smaller limit than [`MAX_FRAME`] (the dataplane
/// reads requests with [`crate::limits::MAX_REQUEST_FRAME`]).
pub fn read_frame_max<M: Message + Default, R: Read>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<M>> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = decode_len_max(prefix, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice()).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad command message: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    #[test]
    fn frames_round_trip_and_eof_is_clean() {
        let req = v1::DataplaneRequest {
            request: Some(v1::dataplane_request::Request::SetHopBypass(
                v1::SetHopBypassRequest {
                    hop: "ids".into(),
                    bypass: true,
                    reason: "upgrade".into(),
                },
            )),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        write_frame(&mut buf, &req).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame::<v1::DataplaneRequest, _>(&mut r).unwrap(),
            Some(req.clone())
        );
        assert_eq!(
            read_frame::<v1::DataplaneRequest, _>(&mut r).unwrap(),
            Some(req)
        );
        assert_eq!(read_frame::<v1::DataplaneRequest, _>(&mut r).unwrap(), None);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut r: &[u8] = &u32::MAX.to_le_bytes();
        assert_eq!(
            read_frame::<v1::DataplaneRequest, _>(&mut r)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidData
        );
        let mut r: &[u8] = &[10, 0, 0, 0, 1, 2];
        assert!(read_frame::<v1::DataplaneRequest, _>(&mut r).is_err());
    }
}
