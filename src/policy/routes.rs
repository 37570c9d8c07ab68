//! The route table: method + path template -> route, built once per policy.
//!
//! Templates are stored in `matchit` with their parameters renamed by position, so
//! `/bots/{botId}` (GET) and `/bots/{id}` (DELETE) share one tree node and differ only
//! in which methods they answer. The most specific template wins (static > `{param}` >
//! `{*rest}`), and a path whose best template lacks the method is `no_route`: there is
//! no fallback to a looser template, so adding a route never widens another one.

use http::Method;

use crate::path::Normalized;

/// Which methods a route answers. `Any` is `methods: ["*"]`.
#[derive(Debug, Clone)]
pub enum Methods {
    Any,
    List(Vec<Method>),
}

impl Methods {
    fn allows(&self, m: &Method) -> bool {
        // TRACE and CONNECT are never forwarded, whatever the policy says.
        if m == Method::TRACE || m == Method::CONNECT {
            return false;
        }
        match self {
            Methods::Any => true,
            Methods::List(list) => {
                list.contains(m) || (m == Method::HEAD && list.contains(&Method::GET))
            }
        }
    }
}

/// A template split into its positional form and parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The template with parameters renamed `{p0}`, `{p1}`, `{*p2}`, trailing slash trimmed.
    pub shape: String,
    pub params: Vec<String>,
}

impl Template {
    pub fn parse(path: &str) -> Result<Template, String> {
        if !path.starts_with('/') {
            return Err("a path template must start with '/'".into());
        }
        let trimmed = crate::path::trim_trailing_slash(path);
        let mut shape = String::with_capacity(trimmed.len());
        let mut params = Vec::new();
        let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
        for (i, seg) in segments.iter().enumerate() {
            shape.push('/');
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("invalid parameter {seg:?}"));
                }
                if catch_all && i + 1 != segments.len() {
                    return Err(format!("{seg:?}: a catch-all must be the last segment"));
                }
                if params.iter().any(|p| p == name) {
                    return Err(format!("parameter {name:?} appears twice"));
                }
                let star = if catch_all { "*" } else { "" };
                shape.push_str(&format!("{{{star}p{}}}", params.len()));
                params.push(name.to_string());
            } else if seg.contains(['{', '}']) {
                return Err(format!(
                    "segment {seg:?}: a parameter must be a whole segment"
                ));
            } else if segments.len() > 1 && seg.is_empty() {
                return Err("empty segment (//) in template".into());
            } else if *seg == "." || *seg == ".." {
                return Err("dot segments are not allowed in templates".into());
            } else if seg.contains(['%', ';', '\\', '#', '?']) {
                return Err(format!(
                    "segment {seg:?} has a character paths may not carry"
                ));
            } else {
                shape.push_str(seg);
            }
        }
        if shape.is_empty() {
            shape.push('/');
        }
        Ok(Template { shape, params })
    }
}

#[derive(Debug, Default)]
struct Node {
    /// (methods, route index), in policy order.
    routes: Vec<(Methods, usize)>,
}

/// The result of matching: the route and the path parameters in template order.
#[derive(Debug)]
pub struct Matched<'p> {
    pub route: usize,
    pub params: Vec<&'p str>,
}

#[derive(Default)]
pub struct Router {
    tree: matchit::Router<usize>,
    nodes: Vec<Node>,
    shapes: Vec<String>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("templates", &self.shapes)
            .finish()
    }
}

impl Router {
    /// Adds a route. Fails on a template shape `matchit` cannot hold next to the others.
    pub fn insert(&mut self, t: &Template, methods: Methods, route: usize) -> Result<(), String> {
        let node = match self.shapes.iter().position(|s| s == &t.shape) {
            Some(n) => n,
            None => {
                self.tree
                    .insert(t.shape.clone(), self.nodes.len())
                    .map_err(|e| e.to_string())?;
                self.shapes.push(t.shape.clone());
                self.nodes.push(Node::default());
                self.nodes.len() - 1
            }
        };
        self.nodes[node].routes.push((methods, route));
        Ok(())
    }

    /// Matches a normalized path. A method list naming the method wins over one that allows
    /// it only as HEAD-for-GET, which wins over `*`: policy order never decides.
    pub fn at<'p>(&self, method: &Method, path: &'p Normalized<'_>) -> Option<Matched<'p>> {
        let found = self
            .tree
            .at(crate::path::trim_trailing_slash(path.as_str()))
            .ok()?;
        let node = &self.nodes[*found.value];
        let rank = |m: &Methods| match m {
            Methods::List(l) if l.contains(method) => 0,
            Methods::List(_) => 1,
            Methods::Any => 2,
        };
        // Validation allows one route per method and template, so no rank holds two.
        let (_, route) = node
            .routes
            .iter()
            .filter(|(m, _)| m.allows(method))
            .min_by_key(|(m, _)| rank(m))?;
        Some(Matched {
            route: *route,
            params: found.params.iter().map(|(_, v)| v).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str) -> Normalized<'_> {
        Normalized::new(path).unwrap()
    }

    fn router(routes: &[(&str, &[&str])]) -> Router {
        let mut r = Router::default();
        for (i, (path, methods)) in routes.iter().enumerate() {
            let m = if methods == &["*"] {
                Methods::Any
            } else {
                Methods::List(methods.iter().map(|m| m.parse().unwrap()).collect())
            };
            r.insert(&Template::parse(path).unwrap(), m, i).unwrap();
        }
        r
    }

    #[test]
    fn an_explicit_head_route_wins_over_head_for_get_in_any_order() {
        for (routes, head, get) in [
            (&[("/x", &["GET"][..]), ("/x", &["HEAD"][..])][..], 1, 0),
            (&[("/x", &["HEAD"][..]), ("/x", &["GET"][..])][..], 0, 1),
        ] {
            let r = router(routes);
            assert_eq!(
                r.at(&Method::HEAD, &n("/x")).unwrap().route,
                head,
                "{routes:?}"
            );
            assert_eq!(
                r.at(&Method::GET, &n("/x")).unwrap().route,
                get,
                "{routes:?}"
            );
        }
        // HEAD-for-GET still beats `*`.
        let r = router(&[("/x", &["*"]), ("/x", &["GET"])]);
        assert_eq!(r.at(&Method::HEAD, &n("/x")).unwrap().route, 1);
    }

    #[test]
    fn most_specific_template_wins_and_params_come_in_order() {
        let r = router(&[
            ("/api/public/bot/{botId}/dashboard/{d}/widget/{w}", &["GET"]),
            ("/api/public/bot/{botId}/getSessions", &["POST"]),
            ("/api/public/bot/{id}/{*rest}", &["*"]),
            ("/api/public/bot/special/getSessions", &["POST"]),
        ]);
        let widget = n("/api/public/bot/st-1/dashboard/x/widget/y");
        let m = r.at(&Method::GET, &widget).unwrap();
        assert_eq!((m.route, m.params), (0, vec!["st-1", "x", "y"]));
        assert_eq!(
            r.at(&Method::POST, &n("/api/public/bot/st-1/getSessions"))
                .unwrap()
                .route,
            1
        );
        assert_eq!(
            r.at(&Method::POST, &n("/api/public/bot/special/getSessions"))
                .unwrap()
                .route,
            3
        );
        let rest = n("/api/public/bot/st-1/a/b");
        let m = r.at(&Method::PUT, &rest).unwrap();
        assert_eq!((m.route, m.params), (2, vec!["st-1", "a/b"]));
    }

    #[test]
    fn method_mismatch_on_best_template_is_no_route() {
        let r = router(&[("/bots/{id}", &["GET"]), ("/{*rest}", &["*"])]);
        assert!(r.at(&Method::DELETE, &n("/bots/1")).is_none());
        assert_eq!(r.at(&Method::HEAD, &n("/bots/1")).unwrap().route, 0);
    }

    #[test]
    fn same_shape_with_other_param_names_shares_a_node() {
        let r = router(&[("/bots/{botId}", &["GET"]), ("/bots/{id}", &["DELETE"])]);
        assert_eq!(r.at(&Method::DELETE, &n("/bots/1")).unwrap().route, 1);
        assert_eq!(r.at(&Method::GET, &n("/bots/1")).unwrap().route, 0);
    }

    #[test]
    fn exact_method_beats_star_on_the_same_template() {
        let r = router(&[("/x", &["*"]), ("/x", &["POST"])]);
        assert_eq!(r.at(&Method::POST, &n("/x")).unwrap().route, 1);
        assert_eq!(r.at(&Method::GET, &n("/x")).unwrap().route, 0);
    }

    #[test]
    fn trace_and_connect_never_match() {
        let r = router(&[("/x", &["*"])]);
        assert!(r.at(&Method::TRACE, &n("/x")).is_none());
        assert!(r.at(&Method::CONNECT, &n("/x")).is_none());
    }

    #[test]
    fn one_trailing_slash_is_not_significant_and_case_is() {
        let r = router(&[("/admin", &["GET"]), ("/", &["GET"])]);
        assert_eq!(r.at(&Method::GET, &n("/admin/")).unwrap().route, 0);
        assert!(r.at(&Method::GET, &n("/Admin")).is_none());
        assert_eq!(r.at(&Method::GET, &n("/")).unwrap().route, 1);
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in [
            "bots",
            "/a/{}",
            "/a/x{id}",
            "/{*a}/b",
            "/a//b",
            "/a/../b",
            "/a/{id}/{id}",
            "/a;b",
        ] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }
}
