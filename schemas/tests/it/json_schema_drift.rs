#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The JSON Schema files under `schemas/json/` are generated from the Rust types. This
//! test fails when they drift; regenerate with
//! `CHORUS_UPDATE_SCHEMAS=1 cargo nextest run -p chorus-schemas` (or `chorus schemas export`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use chorus_schemas::json_schema::render_all;

#[test]
fn checked_in_json_schemas_match_the_rust_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    let files = render_all().unwrap();
    if std::env::var_os("CHORUS_UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for file in &files {
            std::fs::write(dir.join(&file.file_name), &file.content).unwrap();
        }
    }
    let mut drifted = Vec::new();
    for file in &files {
        match std::fs::read_to_string(dir.join(&file.file_name)) {
            Ok(on_disk) if on_disk == file.content => {}
            Ok(_) => drifted.push(format!("{} differs", file.file_name)),
            Err(_) => drifted.push(format!("{} is missing", file.file_name)),
        }
    }
    let expected: BTreeSet<String> = files.iter().map(|f| f.file_name.clone()).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            drifted.push(format!("{name} has no Rust type any more"));
        }
    }
    assert!(
        drifted.is_empty(),
        "JSON Schemas drifted from the Rust types: {drifted:?}\nregenerate with CHORUS_UPDATE_SCHEMAS=1 cargo nextest run -p chorus-schemas"
    );
}

#[test]
fn every_sample_validates_against_its_checked_in_schema_shape() {
    // Each sample's top-level and data fields are all declared by its schema.
    for event in chorus_schemas::samples::all() {
        let info = chorus_schemas::event_type(event.type_name()).unwrap();
        let schema = serde_json::to_value((info.envelope_schema)()).unwrap();
        let value = serde_json::to_value(&event).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for key in value.as_object().unwrap().keys() {
            assert!(
                props.contains_key(key),
                "{}: envelope field {key} not in schema",
                event.type_name()
            );
        }
    }
}
