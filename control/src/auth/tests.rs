use std::sync::Arc;

use tonic::Code;

use super::*;
use crate::audit::AuditLog;

const FILE: &str = "# tokens\n\
    view-tok-0123,vera,1001,\"tapline:view\"\n\
    edit-tok-0123,eddie,1002,\"system:authenticated,edit\"\n\
    \n\
    admin-tok-0123, ada ,1003,\"view,admin\"\n";

#[test]
fn token_files_parse_like_kubernetes_static_tokens() {
    let t = TokenTable::parse(FILE).unwrap();
    assert_eq!(t.len(), 3);
    let id = t.lookup(b"view-tok-0123").unwrap();
    assert_eq!((id.name.as_str(), id.role), ("vera", Some(Role::View)));
    assert_eq!(t.lookup(b"edit-tok-0123").unwrap().role, Some(Role::Edit));
    let ada = t.lookup(b"admin-tok-0123").unwrap();
    assert_eq!((ada.name.as_str(), ada.role), ("ada", Some(Role::Admin)));
    assert_eq!(ada.method, AuthMethod::BearerToken);
    assert!(t.lookup(b"admin-tok-012").is_none());
    assert!(t.lookup(b"admin-tok-01234").is_none());
    assert!(t.lookup(b"").is_none());
    assert_eq!(t.highest_role(), Some(Role::Admin));
}

#[test]
fn bad_token_files_name_the_line_never_the_token() {
    for (text, want) in [
        ("s3cr3t-a,u", "line 1: 2 columns"),
        ("s3cr3t-a,u,1", "line 1 (user \"u\"): no role"),
        ("s3cr3t-a,u,1,\"viewer\"", "no role"),
        ("s3cr3t-a,u,1,\"view\nx", "line 1: an unterminated quote"),
        (
            "s3cr3t-a,u,1,view\ns3cr3t-a,w,2,edit",
            "line 2 (user \"w\"): the token is used twice",
        ),
        ("s3cr et,u,1,view", "not printable ASCII"),
        ("s3cr3t-a,,1,view", "the user (column 2) is empty"),
        ("s3cr3t-a,u,1,\"view\"x", "text after a closing quote"),
    ] {
        let e = TokenTable::parse(text).unwrap_err();
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(!e.contains("s3cr"), "{e}");
    }
}

#[test]
fn debug_never_shows_tokens() {
    let t = TokenTable::parse(FILE).unwrap();
    let d = format!("{t:?}");
    assert!(!d.contains("tok-0123"), "{d}");
    assert!(d.contains("vera"));
}

#[test]
fn methods_need_their_roles() {
    assert_eq!(
        required_role("/tapline.v1.Observer/GetStats"),
        Some(Role::View)
    );
    assert_eq!(
        required_role("/tapline.v1.Admin/SetChain"),
        Some(Role::Edit)
    );
    assert_eq!(
        required_role("/tapline.v1.Admin/SetHopBypass"),
        Some(Role::Edit)
    );
    assert_eq!(required_role("/tapline.v1.Admin/Tap"), Some(Role::Admin));
    assert_eq!(required_role("/tapline.v1.Admin/Future"), Some(Role::Admin));
    assert_eq!(required_role("/tapline.v2.Other/X"), Some(Role::Admin));
    assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
    assert_eq!(
        required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
        None
    );
}

fn authz(anonymous: Option<Role>, certs: Vec<(String, Role)>) -> Authorizer {
    Authorizer::new(
        Arc::new(Credentials::from_table(TokenTable::parse(FILE).unwrap())),
        anonymous,
        certs,
        AuditLog::discard(),
    )
}

#[test]
fn roles_include_the_lower_ones() {
    let a = authz(None, vec![]);
    let call = |tok: &str, path: &str| {
        let h = format!("Bearer {tok}");
        a.check(path, Some(h.as_bytes()), None)
    };
    let get = "/tapline.v1.Observer/GetStats";
    let set = "/tapline.v1.Admin/SetChain";
    let tap = "/tapline.v1.Admin/Tap";
    for tok in ["view-tok-0123", "edit-tok-0123", "admin-tok-0123"] {
        assert!(call(tok, get).is_ok(), "{tok}");
    }
    assert_eq!(
        call("view-tok-0123", set).unwrap_err().code(),
        Code::PermissionDenied
    );
    assert!(call("edit-tok-0123", set).is_ok());
    assert_eq!(
        call("edit-tok-0123", tap).unwrap_err().code(),
        Code::PermissionDenied
    );
    let id = call("admin-tok-0123", tap).unwrap().unwrap();
    assert_eq!(id.name, "ada");
    assert_eq!(call("nope", get).unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        a.check(get, None, None).unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        a.check(get, Some(b"Basic eDp5"), None).unwrap_err().code(),
        Code::Unauthenticated
    );
    // Health is open.
    assert_eq!(
        a.check("/grpc.health.v1.Health/Check", None, None).unwrap(),
        None
    );
}

#[test]
fn anonymous_gets_its_role_and_nothing_more() {
    let a = authz(Some(Role::View), vec![]);
    let id = a
        .check("/tapline.v1.Observer/GetInfo", None, None)
        .unwrap()
        .unwrap();
    assert_eq!(id.method, AuthMethod::Anonymous);
    let e = a
        .check("/tapline.v1.Admin/SetChain", None, None)
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("needs role edit"), "{}", e.message());
    // Nothing grants admin when no token has it.
    let none = Authorizer::new(
        Arc::new(Credentials::from_table(TokenTable::default())),
        Some(Role::View),
        vec![],
        AuditLog::discard(),
    );
    let e = none.check("/tapline.v1.Admin/Tap", None, None).unwrap_err();
    assert!(
        e.message().contains("set control.token_file"),
        "{}",
        e.message()
    );
}

#[test]
fn certificates_map_by_uri_then_cn() {
    let a = authz(
        None,
        vec![
            ("spiffe://cluster.local/ns/sec/sa/ops".into(), Role::Edit),
            ("alice".into(), Role::View),
        ],
    );
    let by_uri = CertSubject {
        cn: Some("alice".into()),
        uris: vec!["spiffe://cluster.local/ns/sec/sa/ops".into()],
    };
    let id = a.authenticate(None, Some(&by_uri), Role::Edit).unwrap();
    assert_eq!(id.name, "spiffe://cluster.local/ns/sec/sa/ops");
    assert_eq!(id.role, Some(Role::Edit));
    let by_cn = CertSubject {
        cn: Some("alice".into()),
        uris: vec![],
    };
    assert_eq!(
        a.authenticate(None, Some(&by_cn), Role::View).unwrap().role,
        Some(Role::View)
    );
    let stranger = CertSubject {
        cn: Some("mallory".into()),
        uris: vec![],
    };
    let id = a.authenticate(None, Some(&stranger), Role::View).unwrap();
    assert_eq!(id.role, None);
    let e = a
        .authorize(&id, "/tapline.v1.Observer/GetInfo", Role::View)
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("mallory"), "{}", e.message());
    // A token wins over the certificate, and a bad token is not
    // rescued by it.
    let id = a
        .authenticate(Some(b"Bearer admin-tok-0123"), Some(&stranger), Role::Admin)
        .unwrap();
    assert_eq!(id.role, Some(Role::Admin));
    assert!(a
        .authenticate(Some(b"Bearer bad"), Some(&by_uri), Role::View)
        .is_err());
}

#[test]
fn legacy_files_and_the_table_reload_when_they_change() {
    let dir = std::env::temp_dir().join(format!("tapline-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("tokens.csv");
    let admin = dir.join("admin");
    std::fs::write(&table, "t1-aaaa,one,1,view\n").unwrap();
    std::fs::write(&admin, "adm-aaaa\n").unwrap();
    let cfg = Config::parse(&format!(
        "[interfaces]\npassive-1 = \"p1\"\n[control]\ntoken_file = \"{}\"\nadmin_token_file = \"{}\"\n",
        table.display(),
        admin.display()
    ))
    .unwrap();
    let c = Credentials::load(&cfg).unwrap();
    assert_eq!(c.count(), 2);
    assert_eq!(c.table().lookup(b"adm-aaaa").unwrap().name, "admin-token");
    assert!(!c.reload());
    std::fs::write(&table, "t2-bbbb,two,2,edit\n").unwrap();
    assert!(c.reload());
    assert!(c.table().lookup(b"t1-aaaa").is_none());
    assert_eq!(c.table().lookup(b"t2-bbbb").unwrap().role, Some(Role::Edit));
    // Broken: the previous tokens stay.
    std::fs::write(&table, "t3,three\n").unwrap();
    assert!(!c.reload());
    assert!(c.table().lookup(b"t2-bbbb").is_some());
    std::fs::remove_file(&table).unwrap();
    assert!(!c.reload());
    assert!(c.table().lookup(b"t2-bbbb").is_some());
    // A duplicate across files is refused at start.
    std::fs::write(&table, "adm-aaaa,dup,1,view\n").unwrap();
    let e = Credentials::load(&cfg).unwrap_err();
    assert!(e.message.contains("also configured"), "{e}");
    assert!(!e.to_string().contains("adm-aaaa"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_files_name_their_field() {
    let dir = std::env::temp_dir().join(format!("tapline-auth-f-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let cfg = Config::parse(&format!(
        "[interfaces]\npassive-1 = \"p1\"\n[control]\nobserver_token_file = \"{}\"\n",
        empty.display()
    ))
    .unwrap();
    let e = Credentials::load(&cfg).unwrap_err();
    assert_eq!(e.field, "control.observer_token_file");
    assert!(e.message.contains("is empty"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
