//! The configuration, now in `tapline-config` ([`tapline_config`]); this
//! path stays while the dataplane's imports move to the new crate.

pub use tapline_config::*;

// The configuration validates against the dataplane's own limits: they
// must agree (checked at compile time).
const _: () = {
    let ours = crate::xdp::umem::FRAME_SIZES;
    let theirs = tapline_config::xdp::FRAME_SIZES;
    assert!(ours.len() == theirs.len());
    let mut i = 0;
    while i < ours.len() {
        assert!(ours[i] == theirs[i], "xdp::umem::FRAME_SIZES");
        i += 1;
    }
    assert!(
        crate::xdp::shm::OUTPUT_NAME_BYTES == tapline_config::output::OUTPUT_NAME_BYTES,
        "xdp::shm::OUTPUT_NAME_BYTES"
    );
};
