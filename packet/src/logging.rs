//! Logging to stdout, as text or JSON (`--log-format json`).
//!
//! The JSON format writes one JSON object per line: `timestamp`, `level`,
//! the event's fields flattened (`message` among them), `target`, and
//! `span`/`spans` inside a span. A field recorded through [`json`] (a list,
//! a map, an `Option`) is written as a JSON value (an array, an object, a
//! number or `null`), not as text holding JSON; every other field keeps
//! what `tracing`'s own JSON formatter writes (strings, numbers, booleans,
//! `Debug` text as a string).
//!
//! How a structured value reaches the formatter: `tracing` gives a
//! formatter a field as `bool`/`i64`/`u64`/`f64`/`&str` or as `Debug`
//! text, nothing richer (short of the unstable `valuable` feature). [`Json`]
//! writes a marker and then the value's JSON text; the formatter recognizes
//! the marker, strips it, and embeds the text as a value once it parses as
//! JSON (else as a string). The marker starts with a control character,
//! which `Debug` of strings and chars escapes and `Debug` of numbers and
//! derived types never starts with, and it holds a random per-process
//! nonce, so `Display` text from outside (a hop name, a peer's message)
//! cannot forge it. The text format strips the marker and shows the JSON.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use serde::ser::{SerializeMap, Serializer as _};
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The logging flags every tapline binary takes (`--log-format`,
/// `--log-level`), flattened into each binary's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter directive (RUST_LOG overrides it).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl LogArgs {
    /// Installs the global subscriber as these flags say.
    pub fn init(&self) {
        init(self.log_format, &self.log_level);
    }
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive
/// (`info`, `debug`, `tapline_dataplane=debug`); `RUST_LOG` overrides it.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour only for people at a terminal, never in collected logs.
    let ansi = std::io::stdout().is_terminal();
    let _ = subscriber(format, filter, std::io::stdout, ansi).try_init();
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture
/// lines with it).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(
            builder
                .with_ansi(ansi)
                .with_target(false)
                .fmt_fields(TextFields)
                .finish(),
        ),
        // JSON lines name their module (`target`), so a collector can
        // route them; fields are JSON values.
        LogFormat::Json => Box::new(
            builder
                .with_ansi(false)
                .fmt_fields(JsonFields)
                .event_format(JsonLines::default())
                .finish(),
        ),
    }
}

/// A log field written as a JSON value: `ports = %json(&modes)` puts an
/// array in the JSON line (`"ports":[{"role":"passive-1",...}]`), and the
/// JSON text in a text line. Serialization happens only when the event is
/// written.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Json<'_, T> {
    Json(value)
}

/// See [`json`]. `Display` and `Debug` both write the marked JSON text.
pub struct Json<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> fmt::Display for Json<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(marker())?;
        match serde_json::to_string(self.0) {
            Ok(s) => f.write_str(&s),
            // A map with non-string keys, a failing `Serialize`: say so as
            // a JSON string rather than fail the whole log line.
            Err(e) => {
                f.write_str(&serde_json::Value::String(format!("unserializable: {e}")).to_string())
            }
        }
    }
}

impl<T: Serialize + ?Sized> fmt::Debug for Json<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `\u{1}tapline-json:<16 hex digits>\u{1}`, the nonce random per process.
fn marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // `RandomState` is seeded from the OS's randomness.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        format!("\u{1}tapline-json:{:016x}\u{1}", h.finish())
    })
}

/// The JSON text of a field [`json`] wrote, or `None` for any other text.
fn marked_json(text: &str) -> Option<&str> {
    text.strip_prefix(marker())
}

/// Serializes one field as `tracing`'s JSON formatter does, except that a
/// [`json`] field becomes a JSON value.
fn serialize_field<M: SerializeMap>(map: &mut M, name: &str, text: &str) -> Result<(), M::Error> {
    match marked_json(text) {
        Some(json) => match serde_json::from_str::<serde_json::Value>(json) {
            Ok(value) => map.serialize_entry(name, &value),
            Err(_) => map.serialize_entry(name, json),
        },
        None => map.serialize_entry(name, text),
    }
}

/// Writes an event's or a span's fields into a JSON map.
struct JsonVisitor<'m, M: SerializeMap> {
    map: &'m mut M,
    state: Result<(), M::Error>,
}

impl<'m, M: SerializeMap> JsonVisitor<'m, M> {
    fn new(map: &'m mut M) -> Self {
        JsonVisitor { map, state: Ok(()) }
    }

    fn entry<V: Serialize + ?Sized>(&mut self, field: &Field, value: &V) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), value);
        }
    }
}

impl<M: SerializeMap> Visit for JsonVisitor<'_, M> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.state.is_ok() {
            let text = format!("{value:?}");
            self.state = serialize_field(self.map, field.name(), &text);
        }
    }
}

/// Records span fields as a JSON object (the JSON format's `span`/`spans`).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl JsonFields {
    fn object(
        existing: Option<&str>,
        fields: impl RecordFields,
    ) -> Result<String, serde_json::Error> {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut map = ser.serialize_map(None)?;
        if let Some(serde_json::Value::Object(old)) =
            existing.and_then(|s| serde_json::from_str(s).ok())
        {
            for (k, v) in &old {
                map.serialize_entry(k, v)?;
            }
        }
        let mut visitor = JsonVisitor::new(&mut map);
        fields.record(&mut visitor);
        visitor.state?;
        map.end()?;
        Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
    }
}

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let text = Self::object(None, fields).map_err(|_| fmt::Error)?;
        writer.write_str(&text)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let existing = (!current.fields.is_empty()).then(|| current.fields.clone());
        current.fields = Self::object(existing.as_deref(), fields).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

/// The JSON line formatter: one object per event, in the key order of
/// `tracing`'s JSON formatter (`timestamp`, `level`, the fields, `target`,
/// `span`, `spans`).
#[derive(Debug, Default)]
pub struct JsonLines {
    timer: SystemTime,
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        self.timer.format_time(&mut Writer::new(&mut timestamp))?;
        // Events from the `log` crate (dependencies) carry their real
        // target and level here, not `log`.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());

        let line = (|| -> Result<Vec<u8>, serde_json::Error> {
            let mut out = Vec::with_capacity(256);
            let mut ser = serde_json::Serializer::new(&mut out);
            let mut map = ser.serialize_map(None)?;
            map.serialize_entry("timestamp", &timestamp)?;
            map.serialize_entry("level", meta.level().as_str())?;
            let mut visitor = JsonVisitor::new(&mut map);
            event.record(&mut visitor);
            visitor.state?;
            map.serialize_entry("target", meta.target())?;
            if let Some(span) = &current {
                map.serialize_entry("span", &SpanObject(span))?;
                let spans: Vec<_> = span.scope().from_root().collect();
                let spans: Vec<_> = spans.iter().map(SpanObject).collect();
                map.serialize_entry("spans", &spans)?;
            }
            map.end()?;
            Ok(out)
        })()
        .map_err(|_| fmt::Error)?;
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
        writeln!(writer)
    }
}

/// A span as `tracing`'s JSON formatter writes it: its fields, then `name`.
struct SpanObject<'a, 'r, S: for<'l> LookupSpan<'l>>(&'a SpanRef<'r, S>);

impl<S: for<'l> LookupSpan<'l>> Serialize for SpanObject<'_, '_, S> {
    fn serialize<Ser: serde::Serializer>(&self, ser: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut map = ser.serialize_map(None)?;
        let ext = self.0.extensions();
        if let Some(fields) = ext.get::<FormattedFields<JsonFields>>() {
            if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&fields.fields) {
                for (k, v) in &fields {
                    map.serialize_entry(k, v)?;
                }
            }
        }
        map.serialize_entry("name", self.0.metadata().name())?;
        map.end()
    }
}

/// The text format's fields: `tracing`'s default rendering, except that a
/// [`json`] field shows its JSON text without the marker.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor(DefaultVisitor::new(writer, true));
        fields.record(&mut visitor);
        visitor.0.finish()
    }
}

struct TextVisitor<'w>(DefaultVisitor<'w>);

impl Visit for TextVisitor<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.record_bool(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.record_i64(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.record_u64(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.0.record_i128(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.0.record_u128(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.record_f64(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.record_str(field, value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.0.record_bytes(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.record_error(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        let shown = marked_json(&text).unwrap_or(&text);
        self.0.record_debug(field, &format_args!("{shown}"));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` under the production subscriber and returns what it wrote.
    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let sub = subscriber(format, EnvFilter::new("trace"), move || sink.clone(), false);
        tracing::subscriber::with_default(sub, f);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[derive(Serialize)]
    struct Port {
        role: &'static str,
        queues: u32,
    }

    #[test]
    fn json_fields_are_values_and_other_fields_keep_their_shape() {
        let ports = [Port {
            role: "passive-1",
            queues: 2,
        }];
        let text = capture(LogFormat::Json, || {
            tracing::info!(
                ports = %json(&ports[..]),
                cpu = %json(&None::<usize>),
                map = ?json(&std::collections::BTreeMap::from([("a", 1)])),
                looks_like_json = "[1,2]",
                displayed = %"[1,2]",
                control = "\u{1}tapline-json:0\u{1}[1]",
                control_displayed = %"\u{1}[1]",
                debug_control = ?"\u{1}[1]",
                n = 7u64,
                neg = -3i64,
                ok = true,
                "ready {}",
                "now"
            );
        });
        let records = lines(&text);
        assert_eq!(records.len(), 1, "{text}");
        let r = &records[0];
        assert_eq!(r["level"], "INFO");
        assert_eq!(r["target"], "tapline_packet::logging::tests");
        assert_eq!(r["message"], "ready now");
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'), "{r}");
        assert_eq!(
            r["ports"],
            serde_json::json!([{"role": "passive-1", "queues": 2}])
        );
        assert!(r["cpu"].is_null());
        assert_eq!(r["map"], serde_json::json!({"a": 1}));
        // JSON-looking text stays a string.
        assert_eq!(r["looks_like_json"], "[1,2]");
        assert_eq!(r["displayed"], "[1,2]");
        // A control character in an ordinary field stays in a string
        // (escaped in the line), a forged marker without the nonce too.
        assert_eq!(r["control"], "\u{1}tapline-json:0\u{1}[1]");
        assert_eq!(r["control_displayed"], "\u{1}[1]");
        assert_eq!(r["debug_control"], "\"\\u{1}[1]\"");
        assert!(!text.contains('\u{1}'), "{text:?}");
        assert!(
            text.contains(r#""control":"\u0001tapline-json:0\u0001[1]""#),
            "{text}"
        );
        assert_eq!(r["n"], 7);
        assert_eq!(r["neg"], -3);
        assert_eq!(r["ok"], true);
        // The key order of tracing's own JSON formatter (the message is
        // the first field).
        let line = text.lines().next().unwrap();
        let order: Vec<usize> = [
            "\"timestamp\"",
            "\"level\"",
            "\"message\"",
            "\"ports\"",
            "\"target\"",
        ]
        .iter()
        .map(|k| line.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{line}");
    }

    #[test]
    fn a_forged_marker_in_display_text_stays_a_string() {
        // Someone else's text that starts with the real marker but is not
        // JSON is written as a string, never spliced into the line.
        let forged = format!("{}]\"x\":1,{{", marker());
        let text = capture(LogFormat::Json, || tracing::warn!(peer = %forged, "hello"));
        let r = &lines(&text)[0];
        assert_eq!(r["peer"], "]\"x\":1,{");
        assert_eq!(r["level"], "WARN");
        assert!(r.get("x").is_none());
    }

    #[test]
    fn spans_are_objects_with_their_fields() {
        let text = capture(LogFormat::Json, || {
            let span = tracing::info_span!("tap", id = 3u64, hops = %json(&["a", "b"]));
            let _g = span.enter();
            span.record("id", 4u64);
            tracing::info!("inside");
        });
        let r = &lines(&text)[0];
        assert_eq!(r["span"]["name"], "tap");
        assert_eq!(r["span"]["id"], 4);
        assert_eq!(r["span"]["hops"], serde_json::json!(["a", "b"]));
        assert_eq!(r["spans"][0]["name"], "tap");
    }

    #[test]
    fn text_format_shows_the_json_without_the_marker() {
        let text = capture(LogFormat::Text, || {
            tracing::info!(tasks = %json(&["chain-q0", "capture-q0"]), name = "w0", "starting worker");
        });
        assert!(!text.contains('\u{1}'), "{text:?}");
        assert!(
            text.contains(r#"starting worker tasks=["chain-q0","capture-q0"] name="w0""#),
            "{text}"
        );
        assert!(!text.contains("tapline_packet"), "{text}");
    }

    #[test]
    fn ordinary_debug_output_never_starts_with_the_marker() {
        // The claim the marker rests on: Debug escapes control characters.
        for s in [
            format!("{:?}", "\u{1}x"),
            format!("{:?}", '\u{1}'),
            format!("{:?}", Some("\u{1}")),
            format!("{:?}", ["\u{1}"]),
            format!("{:?}", -1i64),
            format!("{:?}", 1.5f64),
            format!("{:?}", ()),
        ] {
            assert!(!s.starts_with('\u{1}'), "{s:?}");
        }
    }
}
