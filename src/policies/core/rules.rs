//! targetRef rules (`pkg/plugins/policies/core/rules/{rules,merge}.go`, MADRs 007 and 017,
//! reference §4.3): the `to`/`from` items of the policies that select a dataplane, turned
//! into rules that partition the space of destinations (or clients) into subsets, each with
//! the merge of every item whose subset contains it.
//!
//! 1. Items whose subsets intersect form connected components.
//! 2. Per component, every combination of its distinct tags, each positive or negated, is a
//!    candidate subset; contradictory ones (two values for a key) are skipped.
//! 3. A candidate's conf merges, in item order, the defaults of the items containing it (JSON
//!    merge patch, later wins); no item, no rule.
//! 4. Rules are stable-sorted by their number of positive tags, most first; a query takes the
//!    first rule containing it.

use crate::model::Tags;
use std::collections::{BTreeMap, BTreeSet};

use std::any::Any;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::ResourceKey;

/// One tag of a subset: `key: value`, or `key: !value` when negated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub key: String,
    pub value: String,
    pub not: bool,
}

/// A set of clients or destinations, as a conjunction of tags; empty means everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subset(pub Vec<Tag>);

impl Subset {
    pub fn new(tags: Vec<Tag>) -> Subset {
        Subset(tags)
    }

    /// `{kuma.io/service: name}`: what an outbound to `name` queries.
    pub fn service(name: &str) -> Subset {
        Subset(vec![Tag { key: crate::model::selector::SERVICE_TAG.to_string(), value: name.to_string(), not: false }])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn positive(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter().filter(|t| !t.not)
    }

    pub fn positive_count(&self) -> usize {
        self.positive().count()
    }

    /// Kuma's `Intersect`: empty intersects everything; otherwise every key both name
    /// positively must have equal values.
    pub fn intersects(&self, other: &Subset) -> bool {
        if self.is_empty() || other.is_empty() {
            return true;
        }
        self.positive().all(|a| other.positive().filter(|b| b.key == a.key).all(|b| b.value == a.value))
    }

    /// Kuma's `IsSubset`, read as "`self` contains `other`": every tag of `self` is implied
    /// by the tags `other` has for the same key.
    ///
    /// One exception: a negated MeshHTTPRoute rule hash holds for a query without one (a
    /// service's routes that no route-targeted policy names), as Kuma's later
    /// `ContainsElement` has absent keys satisfy negations. Without it, a policy on one
    /// route's rules would leave the plain service query with no rule at all.
    pub fn contains(&self, other: &Subset) -> bool {
        use crate::policies::mesh_http_route::api::RULE_MATCHES_HASH_TAG;
        self.0.iter().all(|t| {
            let mut same = other.0.iter().filter(|o| o.key == t.key).peekable();
            if same.peek().is_none() {
                return t.not && t.key == RULE_MATCHES_HASH_TAG;
            }
            same.all(|o| match (t.not, o.not) {
                (false, false) | (true, true) => t.value == o.value,
                (true, false) => t.value != o.value,
                (false, true) => false,
            })
        })
    }

    /// As `{key: "value" | "!value"}` (the inspect API's shape).
    pub fn to_map(&self) -> Tags {
        self.0.iter().map(|t| (t.key.clone(), if t.not { format!("!{}", t.value) } else { t.value.clone() })).collect()
    }
}

/// One item going into the rules: its subset, its `default` as JSON and the policy it came
/// from.
#[derive(Clone, Debug)]
pub struct RuleItem {
    pub subset: Subset,
    pub default: Value,
    pub origin: ResourceKey,
}

/// One computed rule: a subset and the merged conf of every item containing it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub subset: Subset,
    pub conf: Value,
    /// The contributing policies, sorted by name.
    pub origin: Vec<ResourceKey>,
}

/// The rules of one policy type for one side (`to` or `from`) of one dataplane, with their
/// confs decoded once into the plugin's conf type on first use (rules are shared by every
/// dataplane with the same matched policies, so each distinct outcome decodes once).
#[derive(Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    decoded: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rules").field(&self.rules).finish()
    }
}

/// How the confs of a policy type merge, beyond a plain JSON merge patch.
#[derive(Clone, Copy, Debug, Default)]
pub struct MergeOptions {
    /// Lists concatenated over all items instead of replaced (Kuma's `Append*` fields).
    pub append: &'static [&'static str],
    /// A list of entries merged by a key field (Kuma's `mergeValuesByKey`: MeshHTTPRoute
    /// `rules`, grouped by `matches`, each group's `default` merged recursively):
    /// `(list field, key field, merged field)`.
    pub merge_by_key: Option<(&'static str, &'static str, &'static str)>,
}

impl MergeOptions {
    /// A plain JSON merge patch.
    pub const NONE: MergeOptions = MergeOptions { append: &[], merge_by_key: None };
}

/// More distinct tags than this in one component would need 2^n candidates; Kuma computes
/// them anyway, higuma refuses to spend more than ~65k per component and keeps the items'
/// own subsets instead (still correct for every query naming one of those subsets).
const MAX_TAGS_PER_COMPONENT: usize = 16;

impl Rules {
    /// Computes the rules of `items` (in merge order: least specific first).
    pub fn compute(items: &[RuleItem], options: MergeOptions) -> Rules {
        let n = items.len();
        // Connected components by union-find over "subsets intersect".
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        for i in 0..n {
            for j in i + 1..n {
                if items[i].subset.intersects(&items[j].subset) {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
            }
        }
        let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            let root = find(&mut parent, i);
            components.entry(root).or_default().push(i);
        }
        // Kuma sorts components by "i:j:..." descending; only the order before the final
        // stable sort depends on it.
        let mut components: Vec<Vec<usize>> = components.into_values().collect();
        let key = |c: &Vec<usize>| c.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(":");
        components.sort_by_key(|c| std::cmp::Reverse(key(c)));

        let mut rules = Vec::new();
        for component in components {
            let tags: BTreeSet<(String, String)> = component
                .iter()
                .flat_map(|&i| items[i].subset.0.iter().filter(|t| !t.not).map(|t| (t.key.clone(), t.value.clone())))
                .collect();
            let tags: Vec<(String, String)> = tags.into_iter().collect();
            let candidates: Vec<Subset> = if tags.len() > MAX_TAGS_PER_COMPONENT {
                log::warn!(
                    "policies: {} distinct tags in one group of overlapping targetRefs; using their own subsets only",
                    tags.len()
                );
                let mut own: Vec<Subset> = component.iter().map(|&i| items[i].subset.clone()).collect();
                own.dedup();
                own
            } else {
                combinations(&tags)
            };
            for candidate in candidates {
                let contributing: Vec<&RuleItem> =
                    component.iter().map(|&i| &items[i]).filter(|item| item.subset.contains(&candidate)).collect();
                if contributing.is_empty() {
                    continue;
                }
                let conf = merge(contributing.iter().map(|i| &i.default), options);
                let mut origin: Vec<ResourceKey> = contributing.iter().map(|i| i.origin.clone()).collect();
                origin.sort_by(|a, b| a.name.cmp(&b.name));
                origin.dedup();
                rules.push(Rule { subset: candidate, conf, origin });
            }
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.subset.positive_count()));
        Rules { rules, decoded: OnceLock::new() }
    }

    /// The first rule containing `query`.
    pub fn compute_for(&self, query: &Subset) -> Option<&Rule> {
        self.rules.iter().find(|r| r.subset.contains(query))
    }

    /// The conf of the first rule containing `query`, decoded as `C`. A merged conf that
    /// does not decode (validation rules that out) counts as no rule, with a warning.
    pub fn conf_for<C: DeserializeOwned + Send + Sync + 'static>(&self, query: &Subset) -> Option<&C> {
        let i = self.rules.iter().position(|r| r.subset.contains(query))?;
        self.decoded::<C>().get(i).and_then(Option::as_ref)
    }

    /// Every rule's conf decoded as `C`, in rule order.
    pub fn decoded<C: DeserializeOwned + Send + Sync + 'static>(&self) -> &[Option<C>] {
        let any = self.decoded.get_or_init(|| {
            let v: Vec<Option<C>> = self
                .rules
                .iter()
                .map(|r| match serde_json::from_value(r.conf.clone()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        log::warn!("policies: a merged conf does not decode ({e}): {}", r.conf);
                        None
                    }
                })
                .collect();
            Box::new(v)
        });
        // One Rules value only ever serves one policy type, hence one conf type.
        any.downcast_ref::<Vec<Option<C>>>().map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Every negation combination of `tags` as a binary counter (tag 0 flips first), all
/// positive evaluated last, each simplified per key; contradictory ones are dropped.
fn combinations(tags: &[(String, String)]) -> Vec<Subset> {
    let n = tags.len();
    let total: u64 = 1 << n;
    let mut out = Vec::new();
    for step in 1..=total {
        let mask = step % total;
        let raw: Vec<Tag> = tags
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Tag { key: k.clone(), value: v.clone(), not: mask & (1 << i) != 0 })
            .collect();
        if let Some(s) = simplify(raw) {
            out.push(s);
        }
    }
    out
}

/// Per key (in first-appearance order): two positive values contradict; one positive value
/// implies every negation of the key; no positive value keeps the negations.
fn simplify(tags: Vec<Tag>) -> Option<Subset> {
    let mut keys: Vec<&str> = Vec::new();
    for t in &tags {
        if !keys.contains(&t.key.as_str()) {
            keys.push(&t.key);
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let of_key: Vec<&Tag> = tags.iter().filter(|t| t.key == key).collect();
        let positive: Vec<&&Tag> = of_key.iter().filter(|t| !t.not).collect();
        match positive.len() {
            0 => out.extend(of_key.iter().map(|t| (*t).clone())),
            1 => out.push((**positive[0]).clone()),
            _ => return None,
        }
    }
    Some(Subset(out))
}

/// Merges `confs` in order (later wins) as RFC 7386 JSON merge patches, then applies the
/// type's append and merge-by-key fields.
pub fn merge<'a>(confs: impl Iterator<Item = &'a Value> + Clone, options: MergeOptions) -> Value {
    let mut out = Value::Object(Default::default());
    for c in confs.clone() {
        merge_patch(&mut out, c);
    }
    if let Value::Object(obj) = &mut out {
        for field in options.append {
            let all: Vec<Value> =
                confs.clone().filter_map(|c| c.get(*field).and_then(Value::as_array).cloned()).flatten().collect();
            if !all.is_empty() {
                obj.insert(field.to_string(), Value::Array(all));
            }
        }
        if let Some((list, key, inner)) = options.merge_by_key {
            let mut groups: Vec<(Value, Vec<Value>)> = Vec::new();
            for entry in confs.clone().filter_map(|c| c.get(list).and_then(Value::as_array)).flatten() {
                let k = entry.get(key).cloned().unwrap_or(Value::Null);
                let d = entry.get(inner).cloned().unwrap_or(Value::Null);
                match groups.iter_mut().find(|(g, _)| *g == k) {
                    Some((_, ds)) => ds.push(d),
                    None => groups.push((k, vec![d])),
                }
            }
            if !groups.is_empty() {
                let merged: Vec<Value> = groups
                    .into_iter()
                    .map(|(k, ds)| {
                        let mut m = serde_json::Map::new();
                        m.insert(key.to_string(), k);
                        m.insert(inner.to_string(), merge(ds.iter(), MergeOptions::default()));
                        Value::Object(m)
                    })
                    .collect();
                obj.insert(list.to_string(), Value::Array(merged));
            }
        }
    }
    out
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceType;
    use serde_json::json;

    fn item(tags: &[(&str, &str)], default: Value, policy: &str) -> RuleItem {
        RuleItem {
            subset: Subset(
                tags.iter().map(|(k, v)| Tag { key: k.to_string(), value: v.to_string(), not: false }).collect(),
            ),
            default,
            origin: ResourceKey::new(ResourceType::Timeout, "default", policy),
        }
    }

    fn tags(s: &Subset) -> Vec<String> {
        s.0.iter().map(|t| format!("{}:{}{}", t.key, if t.not { "!" } else { "" }, t.value)).collect()
    }

    /// Kuma's `multiple-mtp` golden: mtp-1 allows the mesh; mtp-2 denies zone us-east but
    /// allows env dev and prod.
    #[test]
    fn kumas_multiple_permissions_example() {
        let allow = json!({"action": "Allow"});
        let deny = json!({"action": "Deny"});
        let items = vec![
            item(&[], allow.clone(), "mtp-1"),
            item(&[("zone", "us-east")], deny, "mtp-2"),
            item(&[("env", "dev")], allow.clone(), "mtp-2"),
            item(&[("env", "prod")], allow, "mtp-2"),
        ];
        let rules = Rules::compute(&items, MergeOptions::default());
        let got: Vec<(Vec<String>, String)> =
            rules.rules.iter().map(|r| (tags(&r.subset), r.conf["action"].as_str().unwrap().to_string())).collect();
        let expect = |t: &[&str], a: &str| (t.iter().map(|s| s.to_string()).collect::<Vec<_>>(), a.to_string());
        assert_eq!(
            got,
            vec![
                expect(&["env:prod", "zone:us-east"], "Allow"),
                expect(&["env:dev", "zone:us-east"], "Allow"),
                expect(&["env:!dev", "env:!prod", "zone:us-east"], "Deny"),
                expect(&["env:prod", "zone:!us-east"], "Allow"),
                expect(&["env:dev", "zone:!us-east"], "Allow"),
                expect(&["env:!dev", "env:!prod", "zone:!us-east"], "Allow"),
            ]
        );
        let last = rules.rules.last().unwrap();
        assert_eq!(last.origin.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["mtp-1"]);
    }

    #[test]
    fn later_items_override_earlier_ones_field_by_field() {
        let items = vec![
            item(
                &[],
                json!({"connectionTimeout": "5s", "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"}}),
                "all",
            ),
            item(&[("kuma.io/service", "backend")], json!({"http": {"requestTimeout": "1s"}}), "backend"),
        ];
        let rules = Rules::compute(&items, MergeOptions::default());
        let backend = rules.compute_for(&Subset::service("backend")).unwrap();
        assert_eq!(
            backend.conf,
            json!({"connectionTimeout": "5s", "http": {"requestTimeout": "1s", "streamIdleTimeout": "30m"}})
        );
        let other = rules.compute_for(&Subset::service("web")).unwrap();
        assert_eq!(other.conf["http"]["requestTimeout"], "15s");
        assert_eq!(backend.origin.len(), 2);
    }

    #[test]
    fn disjoint_services_are_separate_components_and_empty_queries_need_empty_subsets() {
        let items = vec![
            item(&[("kuma.io/service", "a")], json!({"x": 1}), "p"),
            item(&[("kuma.io/service", "b")], json!({"x": 2}), "q"),
        ];
        let rules = Rules::compute(&items, MergeOptions::default());
        assert_eq!(rules.compute_for(&Subset::service("a")).unwrap().conf["x"], 1);
        assert_eq!(rules.compute_for(&Subset::service("b")).unwrap().conf["x"], 2);
        assert!(rules.compute_for(&Subset::service("c")).is_none());
        assert!(rules.compute_for(&Subset::default()).is_none());
    }

    #[test]
    fn merge_patch_replaces_arrays_and_deletes_nulls() {
        let mut t = json!({"a": [1, 2], "b": {"c": 1, "d": 2}});
        merge_patch(&mut t, &json!({"a": [3], "b": {"c": null}}));
        assert_eq!(t, json!({"a": [3], "b": {"d": 2}}));
    }

    #[test]
    fn merge_by_key_groups_equal_matches() {
        let a = json!({"rules": [{"matches": [{"path": "/a"}], "default": {"x": 1, "y": 1}}]});
        let b = json!({"rules": [{"matches": [{"path": "/a"}], "default": {"y": 2}}, {"matches": [{"path": "/b"}], "default": {"z": 3}}]});
        let options = MergeOptions { merge_by_key: Some(("rules", "matches", "default")), ..Default::default() };
        let m = merge([&a, &b].into_iter(), options);
        assert_eq!(
            m["rules"],
            json!([{"matches": [{"path": "/a"}], "default": {"x": 1, "y": 2}}, {"matches": [{"path": "/b"}], "default": {"z": 3}}])
        );
    }
}
