//! Validation of whole files: defaults, field paths of errors, the shipped
//! example.

use super::*;

fn field_of(text: &str) -> String {
    Config::parse(text).unwrap_err().field
}

#[test]
fn minimal_configs_get_documented_defaults() {
    let c = Config::parse("[interfaces]\npassive-1 = \"net1\"\n").unwrap();
    assert_eq!(c.passive().map(String::as_str), Some("net1"));
    assert!(c.inline().is_none());
    assert_eq!(c.state_dir, PathBuf::from("/run/tapline"));
    assert_eq!(c.xdp_mode, XdpMode::Auto);
    assert_eq!(c.geometry.frame_size, 2048);
    assert_eq!(c.geometry.frame_count, 8192);
    assert_eq!(c.geometry.rings.rx, 2048);
    assert_eq!(c.workers.batch_size, 64);
    assert_eq!(
        c.workers.idle,
        IdleMode::Backoff {
            spins: 1000,
            wait_ms: 10
        }
    );
    assert!(c.promiscuous);
    assert_eq!(c.control.grpc_listen.port(), 50051);
    assert_eq!(c.control.health_listen.port(), 8086);
    assert_eq!(c.control.metrics_listen.port(), 9090);
    assert_eq!(c.control.admin_token_file, None);
    assert_eq!(c.control.dataplane_stale_ms, 1000);
    assert_eq!(c.control.anonymous_role, Some(Role::View));
    assert_eq!(c.control.tls, None);
}

#[test]
fn control_identities_and_tls_keys() {
    let parse = |control: &str| {
        Config::parse(&format!(
            "[interfaces]\npassive-1 = \"p1\"\n[control]\n{control}"
        ))
    };
    // As before roles: admin_token_file alone leaves reads open; any
    // reading credential closes them unless said otherwise.
    let anon = |control: &str| parse(control).unwrap().control.anonymous_role;
    assert_eq!(anon("admin_token_file = \"/a\"\n"), Some(Role::View));
    assert_eq!(anon("observer_token_file = \"/o\"\n"), None);
    assert_eq!(anon("token_file = \"/t\"\n"), None);
    assert_eq!(
        anon("token_file = \"/t\"\nanonymous_role = \"view\"\n"),
        Some(Role::View)
    );
    assert_eq!(anon("anonymous_role = \"none\"\n"), None);
    let c = parse(
        "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_ca_file = \"/ca\"\n\
         tls_client_auth = \"optional\"\n[control.client_roles]\n\"spiffe://x/y\" = \"edit\"\n",
    )
    .unwrap();
    let tls = c.control.tls.unwrap();
    assert!(!tls.client_auth_required);
    assert_eq!(
        tls.client_roles,
        vec![("spiffe://x/y".to_string(), Role::Edit)]
    );
    assert_eq!(c.control.anonymous_role, None, "a client CA closes reads");
    for (control, field) in [
        ("anonymous_role = \"edit\"\n", "control.anonymous_role"),
        ("tls_cert_file = \"/c\"\n", "control.tls_key_file"),
        ("tls_key_file = \"/k\"\n", "control.tls_cert_file"),
        (
            "tls_client_ca_file = \"/ca\"\n",
            "control.tls_client_ca_file",
        ),
        ("token_file = \"tokens.csv\"\n", "control.token_file"),
        (
            "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_auth = \"require\"\n",
            "control.tls_client_auth",
        ),
        (
            "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_ca_file = \"/ca\"\n\
             tls_client_auth = \"maybe\"\n",
            "control.tls_client_auth",
        ),
        (
            "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_ca_file = \"/ca\"\n\
             [control.client_roles]\nops = \"root\"\n",
            "control.client_roles.\"ops\"",
        ),
    ] {
        let e = parse(control).unwrap_err();
        assert_eq!(e.field, field, "{control}: {e}");
    }
}

#[test]
fn shipped_example_is_valid_and_documented_verbatim() {
    let text = include_str!("../../containers/tapline.toml");
    let c = Config::parse(text).unwrap();
    assert!(c.passive().is_some() && c.inline().is_some());
    let body = &text[text.find("[interfaces]").unwrap()..];
    assert!(
        include_str!("../../docs/config.md").contains(body),
        "docs/config.md must quote containers/tapline.toml from [interfaces] on"
    );
}

#[test]
fn inline_sides_come_as_a_pair() {
    assert_eq!(
        field_of("[interfaces]\ninline-1 = \"a\"\n"),
        "interfaces.inline-2"
    );
    assert_eq!(
        field_of("[interfaces]\ninline-2 = \"a\"\n"),
        "interfaces.inline-1"
    );
    assert_eq!(
        field_of("[interfaces]\ninline-1 = \"a\"\ninline-2 = \"a\"\n"),
        "interfaces.inline-2"
    );
    assert_eq!(
        field_of("[interfaces]\npassive-1 = \"a\"\ninline-1 = \"a\"\ninline-2 = \"b\"\n"),
        "interfaces.passive-1"
    );
    assert_eq!(field_of(""), "interfaces");
}

#[test]
fn bad_values_name_their_field() {
    let base = "[interfaces]\npassive-1 = \"n1\"\n";
    let cases = [
        ("[xdp]\nframe_size = 1000\n", "xdp.frame_size"),
        ("[xdp]\nring_size = 1000\n", "xdp.ring_size"),
        ("[xdp]\nframe_count = 100\n", "xdp.frame_count"),
        ("[xdp]\nmode = \"turbo\"\n", "xdp.mode"),
        ("[dataplane]\nbatch_size = 0\n", "dataplane.batch_size"),
        ("[dataplane]\nbatch_size = 512\n", "dataplane.batch_size"),
        ("[dataplane]\nidle = \"sleepy\"\n", "dataplane.idle"),
        ("[dataplane]\ncpus = [9999]\n", "dataplane.cpus"),
        ("[dataplane]\ncpus = [0, 0]\n", "dataplane.cpus"),
        (
            "[dataplane]\nstate_dir = \"relative\"\n",
            "dataplane.state_dir",
        ),
        ("[dataplane]\nidle_wait_ms = 0\n", "dataplane.idle_wait_ms"),
        (
            "[dataplane]\nidle = \"busy\"\nidle_wait_ms = 0\n",
            "dataplane.idle_wait_ms",
        ),
        (
            "[dataplane]\nidle_spins = 4000000000\n",
            "dataplane.idle_spins",
        ),
        ("[capture]\npromiscuous = true\n", "config"),
        (
            "[control]\ngrpc_listen = \"localhost\"\n",
            "control.grpc_listen",
        ),
        (
            "[control]\nmetrics_listen = \"0.0.0.0:50051\"\n",
            "control.metrics_listen",
        ),
        (
            "[control]\nadmin_token_file = \"token\"\n",
            "control.admin_token_file",
        ),
        (
            "[control]\ndataplane_stale_ms = 5\n",
            "control.dataplane_stale_ms",
        ),
        (
            "[chain]\nhops = [{ name = \"s\", a = \"t1a\", b = \"t1b\", on_failure = \"open\" }]\n",
            "chain.hops[0].on_failure",
        ),
        (
            "[chain]\ndefault_on_failure = \"fail\"\n",
            "chain.default_on_failure",
        ),
        ("[chain]\ndrain_ms = 0\n", "chain.drain_ms"),
        ("[heartbeat]\ninterval_ms = 0\n", "heartbeat.interval_ms"),
        ("[heartbeat]\ntimeout_ms = 0\n", "heartbeat.timeout_ms"),
        ("[heartbeat]\nmisses = 0\n", "heartbeat.misses"),
        ("[heartbeat]\nhold_ms = 4000000\n", "heartbeat.hold_ms"),
    ];
    for (extra, field) in cases {
        let text = format!("{base}{extra}");
        assert_eq!(field_of(&text), field, "for {extra:?}");
    }
    for bad in ["much-too-long-name0", "..", "a\\u0000b", "a\\tb"] {
        assert_eq!(
            field_of(&format!("[interfaces]\npassive-1 = \"{bad}\"\n")),
            "interfaces.passive-1",
            "for {bad:?}"
        );
    }
}

#[test]
fn tap_caps_have_defaults_and_bounds() {
    let base = "[interfaces]\npassive-1 = \"n1\"\n";
    let c = Config::parse(base).unwrap();
    assert_eq!(c.tap, TapSettings::default());
    assert_eq!(c.tap.max_concurrent, 4);
    assert_eq!((c.tap.max_snaplen, c.tap.default_snaplen), (65_535, 65_535));
    assert_eq!(c.tap.max_duration, std::time::Duration::from_secs(3600));
    assert_eq!(c.tap.queue_packets, 8192);
    let c = Config::parse(&format!(
        "{base}[tap]\nmax_snaplen = 2000\nmax_concurrent = 0\n"
    ))
    .unwrap();
    assert_eq!((c.tap.max_snaplen, c.tap.default_snaplen), (2000, 2000));
    assert_eq!(c.tap.max_concurrent, 0);
    let cases = [
        ("[tap]\nmax_concurrent = 65\n", "tap.max_concurrent"),
        ("[tap]\nmax_snaplen = 10\n", "tap.max_snaplen"),
        ("[tap]\nmax_snaplen = 300000\n", "tap.max_snaplen"),
        (
            "[tap]\nmax_snaplen = 1000\ndefault_snaplen = 2000\n",
            "tap.default_snaplen",
        ),
        ("[tap]\nmax_duration_s = 0\n", "tap.max_duration_s"),
        ("[tap]\nqueue_packets = 1\n", "tap.queue_packets"),
        ("[tap]\nqueue = 1\n", "config"),
    ];
    for (extra, field) in cases {
        assert_eq!(field_of(&format!("{base}{extra}")), field, "for {extra:?}");
    }
}

#[test]
fn output_groups_and_recorders_are_validated() {
    let ok = Config::parse(
        "[interfaces]\npassive-1 = \"p1\"\n\
         [[output_group]]\nname = \"zeek\"\nmembers = [\"z0\", \"z1\"]\nfilter = \"not port 22\"\nsnaplen = 128\n\
         [[recorder]]\nname = \"disk\"\ndir = \"/data/fast\"\nbulk_dir = \"/data/bulk\"\n\
         rotate_size = \"512MiB\"\nretain_size = \"1G\"\nbulk_retain_age_s = 86400\nqueue_size = 16777216\n",
    )
    .unwrap();
    let g = &ok.output_groups[0];
    assert_eq!(
        (g.name.as_str(), g.members.len(), g.snaplen),
        ("zeek", 2, 128)
    );
    assert_eq!(g.filter.as_ref().unwrap().expr(), "not port 22");
    let r = &ok.recorders[0].settings;
    assert_eq!(r.rotate_bytes, 512 << 20);
    assert_eq!(r.retain_bytes, Some(1 << 30));
    assert_eq!(
        r.bulk_retain_age,
        Some(std::time::Duration::from_secs(86400))
    );
    assert_eq!(r.rotate_interval, Some(std::time::Duration::from_secs(300)));
    assert_eq!(r.queue_bytes, 16 << 20);
    assert_eq!((r.retain_age, r.bulk_retain_bytes), (None, None));

    let base = "[interfaces]\npassive-1 = \"p1\"\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n";
    let group = |body: &str| format!("{base}[[output_group]]\nname = \"g\"\n{body}");
    let rec = |body: &str| format!("{base}[[recorder]]\nname = \"r\"\n{body}");
    let cases = [
        (group("members = []\n"), "output_group[0].members"),
        (group("members = [\"p1\"]\n"), "output_group[0].members[0]"),
        (group("members = [\"i2\"]\n"), "output_group[0].members[0]"),
        (group("members = [\"a/b\"]\n"), "output_group[0].members[0]"),
        (group("members = [\"m\"]\nfilter = \"udp and prot 53\"\n"), "output_group[0].filter"),
        (group("members = [\"m\"]\nsnaplen = 10\n"), "output_group[0].snaplen"),
        (group("members = [\"m\"]\ncolour = 1\n"), "config"),
        (
            format!("{base}[[output_group]]\nname = \"g\"\nmembers = [\"m\"]\n[[output_group]]\nname = \"h\"\nmembers = [\"m\"]\n"),
            "output_group[1].members[0]",
        ),
        (
            format!("{base}[[output_group]]\nname = \"g\"\nmembers = [\"m\"]\n[[output_group]]\nname = \"g\"\nmembers = [\"n\"]\n"),
            "output_group[1].name",
        ),
        (group("name2 = 1\n"), "config"),
        (rec("dir = \"relative\"\n"), "recorder[0].dir"),
        (rec("dir = \"/a\"\nbulk_dir = \"/a\"\n"), "recorder[0].bulk_dir"),
        (rec("dir = \"/a\"\nbulk_retain_age_s = 5\n"), "recorder[0].bulk_retain_size"),
        (rec("dir = \"/a\"\nrotate_size = \"12 parsecs\"\n"), "recorder[0].rotate_size"),
        (rec("dir = \"/a\"\nrotate_size = 100\n"), "recorder[0].rotate_size"),
        (rec("dir = \"/a\"\nqueue_size = \"1k\"\n"), "recorder[0].queue_size"),
        (rec("dir = \"/a\"\nfilter = \"(tcp\"\n"), "recorder[0].filter"),
        ("[interfaces]\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n[[recorder]]\nname = \"r\"\ndir = \"/a\"\n".to_string(), "recorder"),
        ("[interfaces]\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n[[output_group]]\nname = \"g\"\nmembers = [\"m\"]\n".to_string(), "output_group"),
    ];
    for (text, field) in &cases {
        assert_eq!(field_of(text), *field, "for {text:?}");
    }
    // The filter error names the column.
    let e = Config::parse(&group("members = [\"m\"]\nfilter = \"udp and prot 53\"\n")).unwrap_err();
    assert!(e.message.contains("column 9"), "{e}");
    // A chain hop's interface cannot be a member.
    let e = field_of(&format!(
        "{base}[chain]\nhops = [{{ name = \"ids\", a = \"t1\", b = \"t2\" }}]\n[[output_group]]\nname = \"g\"\nmembers = [\"t2\"]\n"
    ));
    assert_eq!(e, "output_group[0].members[0]");
}

#[test]
fn syntax_errors_and_unknown_keys_are_one_line_with_position() {
    let e =
        Config::parse("[interfaces]\npassive-1 = \"n1\"\n[xdp]\nframesize = 2048\n").unwrap_err();
    let line = e.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("line 4"), "{line}");
    assert!(line.contains("framesize"), "{line}");
    let e = Config::parse("[interfaces\n").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    // Found by the fuzzer: a carriage return inside a quoted key.
    let e = Config::parse("\"a\rb\" = 1\n").unwrap_err().to_string();
    assert!(!e.contains(['\r', '\n']), "{e:?}");
}

/// Names come from one table per enum: the parser, the message listing
/// the accepted values and `as_str` agree, and the messages are those
/// operators saw before the tables.
#[test]
fn operator_names_come_from_one_table() {
    let p = "[interfaces]\npassive-1 = \"p1\"\n";
    let i = "[interfaces]\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n";
    let tls = "[control]\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n";
    for (text, line) in [
        (
            format!("{p}[xdp]\nmode = \"turbo\"\n"),
            r#"config error: xdp.mode: "turbo" is not a mode: use "auto", "native-zerocopy", "native-copy" or "generic""#,
        ),
        (
            format!("{p}[dataplane]\nidle = \"spin\"\n"),
            r#"config error: dataplane.idle: "spin" is not an idle mode: use "busy" or "backoff""#,
        ),
        (
            format!("{i}[chain]\ndefault_on_failure = \"explode\"\n"),
            r#"config error: chain.default_on_failure: "explode" is not a failure action: use "bypass" (fail open) or "drop" (fail closed)"#,
        ),
        (
            format!("{i}[[chain.hops]]\nname = \"ids\"\na = \"t1a\"\nb = \"t1b\"\non_failure = \"Drop\"\n"),
            r#"config error: chain.hops[0].on_failure: "Drop" is not a failure action: use "bypass" (fail open) or "drop" (fail closed)"#,
        ),
        (
            format!("{p}{tls}tls_client_ca_file = \"/ca\"\n[control.client_roles]\n\"cn\" = \"root\"\n"),
            r#"config error: control.client_roles."cn": "root" is not a role: use "view", "edit" or "admin""#,
        ),
        (
            format!("{p}{tls}tls_client_auth = \"maybe\"\n"),
            r#"config error: control.tls_client_auth: "maybe" is not a client certificate policy: use "require" or "optional""#,
        ),
        (
            format!("{i}[fallback]\non_exit = \"vanish\"\n"),
            r#"config error: fallback.on_exit: "vanish" is not an exit behaviour: use "keep" (the sidecar keeps the kernel fallback forwarding) or "detach""#,
        ),
    ] {
        assert_eq!(Config::parse(&text).unwrap_err().to_string(), line);
    }
    for &m in XdpMode::ALL {
        let c = Config::parse(&format!("{p}[xdp]\nmode = \"{m}\"\n")).unwrap();
        assert_eq!(c.xdp_mode, m);
        assert_eq!(m.as_str().parse::<XdpMode>(), Ok(m));
    }
    for &a in FailureAction::ALL {
        let c = Config::parse(&format!("{i}[chain]\ndefault_on_failure = \"{a}\"\n")).unwrap();
        assert_eq!(c.chain.default_on_failure, a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.as_str()));
    }
    for &o in OnExit::ALL {
        let c = Config::parse(&format!("{i}[fallback]\non_exit = \"{o}\"\n")).unwrap();
        assert_eq!(c.fallback.on_exit, o);
    }
    for &r in Role::ALL {
        assert_eq!(Role::parse(r.as_str()), Some(r));
    }
}

/// The deployment is one of three; the accessors read it.
#[test]
fn deployments_are_passive_inline_or_both() {
    let c = Config::parse("[interfaces]\npassive-1 = \"p1\"\n").unwrap();
    assert_eq!(
        c.deployment,
        Deployment::Passive {
            passive: "p1".into()
        }
    );
    assert_eq!(c.deployment.ports(), [("passive-1", "p1")]);
    let c = Config::parse("[interfaces]\ninline-1 = \"a\"\ninline-2 = \"b\"\n").unwrap();
    assert!(matches!(c.deployment, Deployment::Inline { .. }));
    assert_eq!(c.passive(), None);
    assert_eq!(c.inline().map(|p| p.side2.as_str()), Some("b"));
    let c = Config::parse("[interfaces]\npassive-1 = \"p\"\ninline-1 = \"a\"\ninline-2 = \"b\"\n")
        .unwrap();
    assert!(matches!(c.deployment, Deployment::PassiveAndInline { .. }));
    assert_eq!(
        c.deployment.ports(),
        [("passive-1", "p"), ("inline-1", "a"), ("inline-2", "b")]
    );
}
