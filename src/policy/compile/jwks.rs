//! An app's `jwks_url` and `jwks_ca_file` (SPEC §3.2.1): the URL's form and the trust
//! anchor are checked here, at load; the keys are fetched by `jwks`: the running proxy's
//! sources in the background, the offline commands' when a token first needs them.

use super::*;
use crate::jwks::{Endpoint, Source};

impl Compiler<'_> {
    pub(super) fn jwks_source(
        &mut self,
        l: u64,
        url: &str,
        ca_file: Option<&Path>,
        what: &What<'_>,
        client_id: &str,
    ) -> Option<Arc<Source>> {
        let ca_pem = match ca_file {
            Some(f) => Some(self.read_file(l, f, "jwks_ca_file")?),
            None => None,
        };
        let endpoint = match Endpoint::parse(url, ca_pem.as_deref()) {
            Ok(e) => e,
            Err(e) => {
                self.err(l, format!("{what}: {e}"));
                return None;
            }
        };
        Some(match &self.ctx.jwks {
            Some(registry) => registry.source(endpoint, ca_pem.as_deref(), client_id),
            None => Source::on_demand(endpoint),
        })
    }
}
