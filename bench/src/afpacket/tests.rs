use super::*;

fn auxdata(status: u32, tci: u16, tpid: u16) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&status.to_ne_bytes());
    a.extend_from_slice(&[0; 8]); // tp_len, tp_snaplen
    a.extend_from_slice(&[0; 4]); // tp_mac, tp_net
    a.extend_from_slice(&tci.to_ne_bytes());
    a.extend_from_slice(&tpid.to_ne_bytes());
    a
}

#[test]
fn vlan_tag_reads_auxdata() {
    let valid = libc::TP_STATUS_VLAN_VALID;
    let tpid_valid = libc::TP_STATUS_VLAN_TPID_VALID;
    assert_eq!(vlan_tag(&auxdata(0, 100, 0x8100)), None);
    assert_eq!(
        vlan_tag(&auxdata(valid | tpid_valid, 0x2064, 0x88a8)),
        Some((0x88a8, 0x2064))
    );
    // Without a valid TPID the tag is 802.1Q.
    assert_eq!(
        vlan_tag(&auxdata(valid, 4094, 0)),
        Some((ETHERTYPE_VLAN, 4094))
    );
    // A short control message is ignored, never read past.
    assert_eq!(vlan_tag(&auxdata(valid, 1, 0)[..17]), None);
    assert_eq!(vlan_tag(&[]), None);
}

#[test]
fn restore_tag_puts_the_tag_after_the_mac_addresses() {
    let frame: Vec<u8> = (0u8..60).collect();
    let mut slot = vec![0xee; slot_bytes(1500)];
    slot[VLAN_TAG_BYTES..VLAN_TAG_BYTES + frame.len()].copy_from_slice(&frame);
    let untouched = slot.clone();
    assert_eq!(restore_tag(&mut slot, frame.len(), None), (4, 60));
    assert_eq!(slot, untouched);
    let (start, len) = restore_tag(&mut slot, frame.len(), Some((0x8100, 0x0064)));
    let mut expected = frame[..12].to_vec();
    expected.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    expected.extend_from_slice(&frame[12..]);
    assert_eq!(&slot[start..start + len], &expected[..]);
}

#[test]
fn slots_hold_the_largest_frame_and_a_restored_tag() {
    // 1500-byte MTU: 1514 bytes and two tags, 4 bytes of room.
    assert!(slot_bytes(1500) >= VLAN_TAG_BYTES + 1514 + 2 * VLAN_TAG_BYTES);
    assert_eq!(slot_bytes(1500) % SLOT_ALIGN_BYTES, 0);
    assert!(slot_bytes(9000) > 9014);
}

#[test]
fn mtu_is_read_from_ip_json() {
    let v = serde_json::json!([{"ifindex": 2, "ifname": "i1", "mtu": 9000}]);
    assert_eq!(parse_mtu(&v), Some(9000));
    assert_eq!(parse_mtu(&serde_json::json!([])), None);
    assert_eq!(parse_mtu(&serde_json::json!([{"mtu": "x"}])), None);
    // The loopback interface exists in every namespace.
    assert!(interface_mtu("lo").unwrap() > 0);
}

#[test]
fn batch_is_bounded() {
    assert!(check_batch(0).is_err());
    assert!(check_batch(MAX_BATCH + 1).is_err());
    assert!(check_batch(DEFAULT_BATCH).is_ok());
}
