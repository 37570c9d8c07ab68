//! `scopegate schema config|policy`: print the file's JSON Schema (SPEC §2).

use std::process::ExitCode;

use scopegate::schema::Kind;

pub(super) fn schema(kind: Kind) -> ExitCode {
    match serde_json::to_string_pretty(&kind.schema()) {
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
