//! Kafka records as the router and every consumer see them: a type header (one of the
//! known ones, a wrong one, or none), a version header and arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 6] = [
    "chat.message",
    "inference.job",
    "inference.result",
    "feedback",
    "chain.log",
    "no.such.type",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let type_header = match selector % 8 {
        n if (n as usize) < TYPES.len() => Some(TYPES[n as usize]),
        _ => None,
    };
    let version_header = if selector & 0x80 != 0 { Some("1") } else { None };
    // The decoder itself, then the router's full validation (decode + checks + route).
    let _ = chorus_schemas::AnyEvent::decode(type_header, payload);
    let router = chorus_router::IntakeRouter::new("fuzz.");
    let _ = router.route(type_header, version_header, Some(payload));
});
