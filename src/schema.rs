//! The JSON Schema (draft 2020-12) of the config and the policy (SPEC §2, `scopegate
//! schema`), generated from the serde types the loader reads them with, so it cannot drift
//! from what the loader accepts. Editors use it to complete and check the files; `check`
//! validates against it to report every structural error of a file in one run (`validate`).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Policy,
}

impl Kind {
    pub fn schema(self) -> Schema {
        match self {
            Kind::Config => crate::config::schema(),
            Kind::Policy => crate::policy::raw::schema(),
        }
    }
}

/// The schema of `T`, titled and described for the editor that shows it.
pub(crate) fn generate<T: JsonSchema>(title: &str, description: &str) -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    schema
}
