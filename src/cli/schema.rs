//! `scopegate schema config|policy`: print the file's JSON Schema (SPEC §2).

use std::process::ExitCode;

use schemars::Schema;

pub(super) fn schema(schema: Schema) -> ExitCode {
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write the schema: {e}");
            ExitCode::from(1)
        }
    }
}
