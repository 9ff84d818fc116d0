use strata_core::event::id_key;
use uuid::Uuid;

#[test]
fn id_key_takes_lower_case_uuids_as_they_are_and_hashes_everything_else() {
    let lower = "e621e1f8-c36c-495a-93fc-0c247a3e6e5f";
    assert_eq!(id_key(lower), 0xe621e1f8_c36c_495a_93fc_0c247a3e6e5f);
    // Upper case is another spelling, so another id: the UUIDv5 of its bytes.
    let upper = "E621E1F8-C36C-495A-93FC-0C247A3E6E5F";
    let v5 = |text: &str| Uuid::new_v5(&Uuid::NAMESPACE_OID, text.as_bytes()).as_u128();
    assert_eq!(id_key(upper), v5(upper));
    assert_ne!(id_key(upper), id_key(lower));
    for other in [
        "ajs-next-1717171717171-3b1f0c2e-5d7e-4a8f-9c3b-2e1d0f9a8b7c",
        "msg-1",
        "",
        "e621e1f8c36c495a93fc0c247a3e6e5f",
    ] {
        assert_eq!(id_key(other), v5(other), "{other:?}");
    }
    assert_ne!(id_key("msg-1"), id_key("msg-2"));
}
