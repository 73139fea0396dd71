//! JSON Schema documents of every event type, as checked in under `schemas/json/`.

use crate::EVENT_TYPES;

/// One schema file: its name under `schemas/json/` and its pretty-printed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    pub file_name: String,
    pub content: String,
}

/// Renders the envelope schema of every event type (`<type>.v<version>.json`).
pub fn render_all() -> Result<Vec<SchemaFile>, serde_json::Error> {
    EVENT_TYPES
        .iter()
        .map(|info| {
            let mut content = serde_json::to_string_pretty(&(info.envelope_schema)())?;
            content.push('\n');
            Ok(SchemaFile {
                file_name: format!("{}.v{}.json", info.type_name, info.version),
                content,
            })
        })
        .collect()
}
