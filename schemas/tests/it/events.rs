#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
use arrow_array::{Array, StringArray, UInt64Array};
use chorus_schemas::arrow::{EventBatchEncoder, arrow_schema, to_record_batch};
use chorus_schemas::*;

#[test]
fn every_event_type_has_a_sample_and_round_trips() {
    let samples = samples::all();
    assert_eq!(
        samples.len(),
        EVENT_TYPES.len(),
        "one sample per event type"
    );
    for event in samples {
        let bytes = event.to_json().unwrap();
        let decoded = AnyEvent::decode(Some(event.type_name()), &bytes).unwrap();
        assert_eq!(decoded, event);
        let (decoded, form) = AnyEvent::decode_form(None, &bytes).unwrap();
        assert_eq!(decoded, event, "type read from the JSON when no header");
        assert_eq!(form, EnvelopeForm::CloudEvents);
        // The same event in envelope 1 decodes to the same event, and says so.
        let (decoded, form) =
            AnyEvent::decode_form(None, &samples::legacy_envelope_json(&event).unwrap()).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(form, EnvelopeForm::Legacy);
        assert_eq!(
            peek_event_type(&bytes).unwrap().type_name,
            event.type_name()
        );
        assert_eq!(
            peek_event_type(&samples::legacy_envelope_json(&event).unwrap())
                .unwrap()
                .type_name,
            event.type_name()
        );
    }
}

#[test]
fn records_are_structured_cloudevents() {
    for event in samples::all() {
        let value = serde_json::to_value(&event).unwrap();
        let info = event_type(event.type_name()).unwrap();
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["type"], info.cloudevents_type);
        assert_eq!(
            info.cloudevents_type,
            format!("ai.chorus.{}.v{}", info.type_name, info.version)
        );
        assert_eq!(
            info.dataschema,
            format!("urn:chorus:schema:{}", info.cloudevents_type)
        );
        assert_eq!(value["dataschema"], info.dataschema);
        assert_eq!(value["subject"], event.key());
        assert_eq!(value["datacontenttype"], "application/json");
        check_uri_reference("source", value["source"].as_str().unwrap()).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.len(),
            9,
            "specversion id source type dataschema subject time datacontenttype data: {keys:?}"
        );
        // The registered schema names itself by the dataschema and pins the fixed
        // attributes.
        let schema = (info.envelope_schema)().to_value();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(schema["properties"]["dataschema"]["const"], info.dataschema);
        assert_eq!(schema["properties"]["type"]["const"], info.cloudevents_type);
        assert_eq!(schema["additionalProperties"], false);
    }
}

#[test]
fn topics_of_types_are_known_and_names_unique() {
    let mut names: Vec<&str> = Topic::ALL.iter().map(|t| t.base_name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), Topic::ALL.len());
    for t in Topic::ALL {
        assert_eq!(Topic::from_name("x.", &t.name("x.")), Some(t));
    }
}

#[test]
fn envelope_ids_are_uuid_v7_and_time_is_milliseconds() {
    let e = Envelope::new(
        "test",
        Feedback {
            conversation_id: "c".into(),
            message_id: uuid::Uuid::now_v7(),
            account: "0xabc".into(),
            rating: 4,
            comment: None,
        },
    );
    assert_eq!(e.id.get_version_num(), 7);
    assert_eq!(e.time.timestamp_subsec_nanos() % 1_000_000, 0);
    assert_eq!(e.key, "c");
}

#[test]
fn decode_rejects_bad_input_with_reasons() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "JSON"),
        (b"[]", "JSON"),
        (br#"{"type":"nope"}"#, "unknown event type"),
        (
            br#"{"type":"feedback","id":"x"}"#,
            "not valid JSON for ai.chorus.feedback.v1",
        ),
    ];
    for (bytes, expected) in cases {
        let err = AnyEvent::decode(None, bytes).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
    }
    let mut v = serde_json::to_value(&samples::all()[5]).unwrap();
    let later = v["type"].as_str().unwrap().replace(".v1", ".v2");
    v["type"] = later.into();
    let err = AnyEvent::decode(None, &serde_json::to_vec(&v).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("knows up to 1"), "{err}");
}

#[test]
fn every_type_has_an_arrow_schema_covering_all_fields() {
    // Strict mode: a field the Arrow schema lacks is an error, so a Rust field added
    // without its column fails here.
    for event in samples::all() {
        let mut encoder = EventBatchEncoder::new(event.type_name(), 16, true).unwrap();
        encoder
            .push_value(serde_json::to_value(&event).unwrap())
            .unwrap();
        let batch = encoder.finish().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 1, "{}", event.type_name());
        for column in batch.columns() {
            assert_eq!(
                column.null_count(),
                0,
                "{}: every sample field is set",
                event.type_name()
            );
        }
        let schema = arrow_schema(event.type_name()).unwrap();
        assert_eq!(schema.field(0).name(), "id");
        assert_eq!(schema.field(4).data_type(), &arrow::timestamp_type());
    }
}

#[test]
fn batch_of_events_to_record_batch() {
    let events: Vec<Envelope<PoiScore>> = (0..100u64)
        .map(|i| {
            Envelope::new(
                "test",
                PoiScore {
                    epoch: 3,
                    account: format!("0x{i:040x}"),
                    role: ContributorRole::User,
                    points: i * 10,
                    items: i,
                    amount_wei: (u128::from(i) * 1_000_000_000_000_000_000).to_string(),
                },
            )
        })
        .collect();
    let batch = to_record_batch(&events).unwrap();
    assert_eq!(batch.num_rows(), 100);
    let points = batch
        .column_by_name("points")
        .unwrap()
        .as_any()
        .downcast_ref::<UInt64Array>()
        .unwrap();
    assert_eq!(points.value(7), 70);
    let role = batch
        .column_by_name("role")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(role.value(0), "user");
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ids.value(0), events[0].id.to_string());
    let key = batch
        .column_by_name("key")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(key.value(99), "3");
}

#[test]
fn optional_fields_become_nulls() {
    let e = Envelope::new(
        "test",
        Feedback {
            conversation_id: "c".into(),
            message_id: uuid::Uuid::now_v7(),
            account: "0xabc".into(),
            rating: 2,
            comment: None,
        },
    );
    let batch = to_record_batch(&[e]).unwrap();
    assert_eq!(batch.column_by_name("comment").unwrap().null_count(), 1);
}

#[test]
fn decode_refuses_attributes_the_schema_does_not_name() {
    for event in samples::all() {
        let mut value = serde_json::to_value(&event).unwrap();
        value["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into();
        let err = AnyEvent::decode(None, &serde_json::to_vec(&value).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("traceparent"), "{err}");
    }
}
