//! Differential test: every case is one job (static_configs and/or file_sd
//! files + relabel_configs + params/scheme/metrics_path); all cases run in
//! ONE real Prometheus 2.42 and through `api::targets_once` (what
//! `promshard targets` prints). activeTargets (discoveredLabels, labels,
//! scrapePool, scrapeUrl, scrapeInterval, scrapeTimeout) and droppedTargets
//! (discoveredLabels) must agree, order-insensitively.
//!
//! Every case must leave at least one active or dropped target in
//! Prometheus, so that "the job is listed" means "the job is synced".

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use promshard_promlib::api::{self, TargetDiscovery};
use promshard_promlib::config;
use serde_json::json;

/// One job. `body` is the job's YAML below `job_name` (unindented); `{DIR}`
/// stands for the directory holding `files`.
struct Case {
    name: &'static str,
    body: String,
    files: Vec<(&'static str, String)>,
}

fn case(name: &'static str, body: &str) -> Case {
    Case {
        name,
        body: body.to_string(),
        files: Vec::new(),
    }
}

fn with_file(mut c: Case, file: &'static str, content: &str) -> Case {
    c.files.push((file, content.to_string()));
    c
}

/// A file_sd job reading `{DIR}/<name>.json` with `content`, then `rest`.
fn json_case(name: &'static str, content: &str, rest: &str) -> Case {
    let body = format!("file_sd_configs: [{{files: ['{{DIR}}/{name}.json']}}]\n{rest}");
    Case {
        name,
        body,
        files: vec![(leak(format!("{name}.json")), content.to_string())],
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Static targets (`targets` as a YAML flow list) then `rest`.
fn static_case(name: &'static str, targets: &str, rest: &str) -> Case {
    case(
        name,
        &format!("static_configs: [{{targets: {targets}}}]\n{rest}"),
    )
}

fn cases() -> Vec<Case> {
    let six =
        r#"['a.invalid:1','b.invalid:2','c.invalid:3','d.invalid:4','e.invalid:5','f.invalid:6']"#;
    vec![
        // --- discovery shapes ---
        case(
            "static_basic",
            "static_configs:\n- targets: ['a.invalid:9100', 'b.invalid:9100']\n  labels: {env: prod}\n- targets: ['c.invalid:1']\n",
        ),
        static_case("address_without_port_http", "['noport.invalid']", ""),
        static_case(
            "address_without_port_https",
            "['noport.invalid']",
            "scheme: https\n",
        ),
        static_case("address_ipv6", "['[::1]', '::2', '[::3]:9']", ""),
        static_case(
            "address_odd_chars",
            "['user@h.invalid:1', 'h.invalid:1#frag', 'h%20x.invalid:2']",
            "",
        ),
        json_case(
            "file_json_basic",
            r#"[{"targets":["a.invalid:1","b.invalid:2"],"labels":{"env":"dev","team":"x"}},{"targets":["c.invalid:3"]}]"#,
            "",
        ),
        with_file(
            case(
                "file_yaml_basic",
                "file_sd_configs: [{files: ['{DIR}/file_yaml_basic.yml']}]\n",
            ),
            "file_yaml_basic.yml",
            "- targets: ['a.invalid:1']\n  labels:\n    env: stage\n- targets: ['b.invalid:2', 'c.invalid:3']\n",
        ),
        with_file(
            case(
                "file_yaml_scalar_values",
                "file_sd_configs: [{files: ['{DIR}/file_yaml_scalar_values.yaml']}]\n",
            ),
            "file_yaml_scalar_values.yaml",
            "- targets: [a.invalid:1]\n  labels: {port: 9100, ratio: 1.5, flag: true}\n",
        ),
        with_file(
            with_file(
                case(
                    "file_glob",
                    "file_sd_configs: [{files: ['{DIR}/file_glob_*.json'], refresh_interval: 1m}]\n",
                ),
                "file_glob_a.json",
                r#"[{"targets":["a.invalid:1"]}]"#,
            ),
            "file_glob_b.json",
            r#"[{"targets":["b.invalid:2"],"labels":{"f":"b"}}]"#,
        ),
        with_file(
            with_file(
                case(
                    "file_json_and_yaml",
                    "file_sd_configs:\n- files: ['{DIR}/fjy.json']\n- files: ['{DIR}/fjy.yml']\n",
                ),
                "fjy.json",
                r#"[{"targets":["j.invalid:1"]}]"#,
            ),
            "fjy.yml",
            "- targets: ['y.invalid:1']\n",
        ),
        with_file(
            with_file(
                case(
                    "file_invalid_label_name_rejects_file",
                    "file_sd_configs: [{files: ['{DIR}/fbad.json', '{DIR}/fgood.json']}]\n",
                ),
                "fbad.json",
                r#"[{"targets":["bad.invalid:1"],"labels":{"1bad":"x"}}]"#,
            ),
            "fgood.json",
            r#"[{"targets":["good.invalid:1"]}]"#,
        ),
        json_case(
            "file_meta_filepath_not_overridable",
            r#"[{"targets":["m.invalid:1"],"labels":{"__meta_filepath":"fake","a":null}}]"#,
            "",
        ),
        with_file(
            with_file(
                case(
                    "file_json_unknown_field",
                    "file_sd_configs: [{files: ['{DIR}/unknown_field.json', '{DIR}/unknown_ok.json']}]\n",
                ),
                "unknown_field.json",
                r#"[{"targets":["u.invalid:1"],"extra":1}]"#,
            ),
            "unknown_ok.json",
            r#"[{"targets":["ok.invalid:1"]}]"#,
        ),
        with_file(
            with_file(
                case(
                    "file_null_group_rejects_file",
                    "file_sd_configs: [{files: ['{DIR}/null_group.json', '{DIR}/null_ok.yml']}]\n",
                ),
                "null_group.json",
                r#"[{"targets":["n.invalid:1"]}, null]"#,
            ),
            "null_ok.yml",
            "- targets: ['ok.invalid:1']\n  labels:\n",
        ),
        with_file(
            with_file(
                case(
                    "file_yaml_unknown_field_rejects_file",
                    "file_sd_configs: [{files: ['{DIR}/yunk.yml', '{DIR}/yok.yaml']}]\n",
                ),
                "yunk.yml",
                "- targets: ['u.invalid:1']\n  extra: 1\n",
            ),
            "yok.yaml",
            "- targets: ['ok.invalid:1']\n",
        ),
        json_case(
            "file_empty_group",
            r#"[{"targets":[],"labels":{"a":"1"}},{"targets":["x.invalid:1"],"labels":{}}]"#,
            "",
        ),
        with_file(
            case(
                "file_relative_path",
                "file_sd_configs: [{files: ['sd_rel/file_relative_path.json']}]\n",
            ),
            "sd_rel/file_relative_path.json",
            r#"[{"targets":["rel.invalid:1"]}]"#,
        ),
        json_case(
            "meta_filepath",
            r#"[{"targets":["m.invalid:1"]}]"#,
            "relabel_configs:\n- {source_labels: [__meta_filepath], regex: '.*/(.*)', target_label: sdfile}\n",
        ),
        json_case(
            "group_vs_target_labels",
            r#"[{"targets":["t.invalid:1"],"labels":{"__address__":"group.invalid:1","instance":"from-group","x":"1"}}]"#,
            "",
        ),
        json_case(
            "group_label_job_overrides_default",
            r#"[{"targets":["t.invalid:1"],"labels":{"job":"other"}}]"#,
            "",
        ),
        json_case(
            "group_labels_scheme_path",
            r#"[{"targets":["t.invalid"],"labels":{"__scheme__":"https","__metrics_path__":"/probe","__param_q":"v"}}]"#,
            "",
        ),
        static_case(
            "duplicate_same_group",
            "['d.invalid:1', 'd.invalid:1', 'e.invalid:1']",
            "",
        ),
        case(
            "duplicate_across_groups",
            "static_configs:\n- targets: ['d.invalid:1']\n  labels: {a: '1'}\n- targets: ['d.invalid:1']\n  labels: {a: '1'}\n",
        ),
        static_case(
            "duplicate_dropped",
            "['x.invalid:1', 'x.invalid:1']",
            "relabel_configs: [{action: drop, source_labels: [__address__]}]\n",
        ),
        json_case(
            "empty_address_error",
            r#"[{"targets":["","ok.invalid:1"]}]"#,
            "",
        ),
        static_case(
            "empty_address_by_relabel",
            "['gone.invalid:1', 'kept.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'gone.*', target_label: __address__, replacement: ''}\n",
        ),
        static_case(
            "address_with_slash_error",
            "['s.invalid:1', 'ok.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 's.invalid:1', target_label: __address__, replacement: 'h.invalid/x'}\n",
        ),
        // --- replace ---
        static_case(
            "replace_dollar1",
            "['host.invalid:9100']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '([^:]+):.*', target_label: host, replacement: '$1'}\n",
        ),
        static_case(
            "replace_braces",
            "['host.invalid:9100']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '([^:]+):(.*)', target_label: hp, replacement: '${1}x${2}'}\n",
        ),
        static_case(
            "replace_named_groups",
            "['host.invalid:9100']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '(?P<host>[^:]+):(?P<port>\\d+)', target_label: hp, replacement: '${host}-${port}-$port'}\n",
        ),
        static_case(
            "replace_double_dollar",
            "['host.invalid:9100']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '(.*)', target_label: lit, replacement: '$$1-$$'}\n",
        ),
        static_case(
            "replace_dollar1x",
            "['host.invalid:9100']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '(.*)', target_label: a, replacement: 'p$1x'}\n- {source_labels: [__address__], regex: '(.*)', target_label: b, replacement: 'p$1-'}\n- {source_labels: [__address__], regex: '(.*)', target_label: c, replacement: 'p$9'}\n",
        ),
        static_case(
            "replace_no_group_dollar1",
            "['host.invalid:9100']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'host.*', target_label: a, replacement: 'v$1'}\n",
        ),
        static_case(
            "target_label_expansion",
            "['web.invalid:1', 'db.invalid:2']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '(\\w+)\\.invalid:(\\d)', target_label: 'role_${1}', replacement: '$2'}\n",
        ),
        static_case(
            "replace_invalid_label_name",
            "['1abc.invalid:1', 'ok.invalid:2']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '(\\w+)\\.invalid:.*', target_label: '$1', replacement: 'v'}\n",
        ),
        static_case(
            "replace_no_match",
            "['a.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'zzz', target_label: x, replacement: 'y'}\n",
        ),
        case(
            "replace_empty_result_deletes",
            "static_configs: [{targets: ['a.invalid:1'], labels: {env: prod, team: t}}]\nrelabel_configs:\n- {source_labels: [nothing], target_label: env}\n- {target_label: team, replacement: ''}\n",
        ),
        case(
            "replace_separator",
            "static_configs: [{targets: ['a.invalid:1'], labels: {x: '1', y: '2'}}]\nrelabel_configs:\n- {source_labels: [x, y, missing], separator: '/', target_label: joined}\n- {source_labels: [x, y], target_label: joined_default}\n",
        ),
        // --- keep / drop / equal ---
        static_case(
            "keep_regex",
            six,
            "relabel_configs:\n- {action: keep, source_labels: [__address__], regex: '[a-c]\\.invalid:\\d'}\n",
        ),
        static_case(
            "drop_regex",
            six,
            "relabel_configs:\n- {action: drop, source_labels: [__address__], regex: '(a|d).*'}\n",
        ),
        case(
            "keep_missing_label",
            "static_configs:\n- {targets: ['a.invalid:1'], labels: {k: v}}\n- {targets: ['b.invalid:1']}\nrelabel_configs:\n- {action: keep, source_labels: [k], regex: '.+'}\n",
        ),
        case(
            "keepequal",
            "static_configs:\n- {targets: ['a.invalid:1'], labels: {p: '1', q: '1'}}\n- {targets: ['b.invalid:1'], labels: {p: '1', q: '2'}}\n- {targets: ['c.invalid:1']}\nrelabel_configs:\n- {action: keepequal, source_labels: [p], target_label: q}\n",
        ),
        case(
            "dropequal",
            "static_configs:\n- {targets: ['a.invalid:1'], labels: {p: '1', q: '1'}}\n- {targets: ['b.invalid:1'], labels: {p: '1', q: '2'}}\n- {targets: ['c.invalid:1']}\nrelabel_configs:\n- {action: dropequal, source_labels: [p], target_label: q}\n",
        ),
        // --- hashmod ---
        static_case(
            "hashmod_2",
            six,
            "relabel_configs:\n- {action: hashmod, source_labels: [__address__], modulus: 2, target_label: shard}\n",
        ),
        static_case(
            "hashmod_7_keep",
            six,
            "relabel_configs:\n- {action: hashmod, source_labels: [__address__], modulus: 7, target_label: __tmp_hash}\n- {action: keep, source_labels: [__tmp_hash], regex: '[0-3]'}\n",
        ),
        static_case(
            "hashmod_1000_multi_source",
            six,
            "relabel_configs:\n- {action: hashmod, source_labels: [__address__, job], modulus: 1000, target_label: h}\n",
        ),
        static_case(
            "hashmod_large_modulus",
            six,
            "relabel_configs:\n- {action: hashmod, source_labels: [__address__], modulus: 18446744073709551615, target_label: h}\n",
        ),
        // --- label* ---
        json_case(
            "labelmap_meta",
            r#"[{"targets":["a.invalid:1"],"labels":{"__meta_zone":"z1","__meta_rack":"r9"}}]"#,
            "relabel_configs:\n- {action: labelmap, regex: '__meta_(.*)'}\n",
        ),
        json_case(
            "labelmap_replacement",
            r#"[{"targets":["a.invalid:1"],"labels":{"foo_a":"1","foo_b":"2","bar":"3"}}]"#,
            "relabel_configs:\n- {action: labelmap, regex: 'foo_(.*)', replacement: 'copy_${1}'}\n",
        ),
        json_case(
            "labelmap_invalid_result",
            r#"[{"targets":["a.invalid:1"],"labels":{"__meta_1x":"v","__meta_ok":"w"}}]"#,
            "relabel_configs:\n- {action: labelmap, regex: '__meta_(.*)'}\n",
        ),
        case(
            "labeldrop",
            "static_configs: [{targets: ['a.invalid:1'], labels: {env: e, team: t, keep: k}}]\nrelabel_configs:\n- {action: labeldrop, regex: 'env|team'}\n",
        ),
        case(
            "labelkeep",
            "static_configs: [{targets: ['a.invalid:1'], labels: {env: e, team: t, keepme: k}}]\nrelabel_configs:\n- {action: labelkeep, regex: '__.*|job|keepme'}\n",
        ),
        case(
            "lowercase",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'MiXeD ÀÉÎ İ Σ'}}]\nrelabel_configs:\n- {action: lowercase, source_labels: [v], target_label: lower}\n",
        ),
        case(
            "uppercase",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'mixed straße ǆ ﬁ àéî'}}]\nrelabel_configs:\n- {action: uppercase, source_labels: [v], target_label: upper}\n",
        ),
        // --- regex edge cases ---
        case(
            "regex_digit_non_ascii",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: '٣٤12'}}]\nrelabel_configs:\n- {source_labels: [v], regex: '(\\d*)(.*)', target_label: split, replacement: '$1|$2'}\n",
        ),
        case(
            "regex_word_non_ascii",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'héllo_w'}}]\nrelabel_configs:\n- {source_labels: [v], regex: '(\\w*)(.*)', target_label: split, replacement: '$1|$2'}\n",
        ),
        case(
            "regex_space_non_ascii",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: \"a\\u00a0b c\\vd\"}}]\nrelabel_configs:\n- {source_labels: [v], regex: '([^\\s]*)\\s(.*)', target_label: split, replacement: '$1|$2'}\n- {source_labels: [v], regex: '.*\\s.*\\s.*', target_label: two_spaces, replacement: 'yes'}\n",
        ),
        case(
            "regex_word_boundary_non_ascii",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'xé'}}]\nrelabel_configs:\n- {source_labels: [v], regex: 'x\\b.*', target_label: boundary, replacement: 'yes'}\n- {source_labels: [v], regex: 'x\\B.*', target_label: no_boundary, replacement: 'yes'}\n",
        ),
        case(
            "regex_quote_meta",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'a.*b', w: 'axxb'}}]\nrelabel_configs:\n- {source_labels: [v], regex: '\\Qa.*b\\E', target_label: v_lit, replacement: 'yes'}\n- {source_labels: [w], regex: '\\Qa.*b\\E', target_label: w_lit, replacement: 'yes'}\n",
        ),
        case(
            "regex_alternation_anchoring",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'ab', w: 'b'}}]\nrelabel_configs:\n- {source_labels: [v], regex: 'a|b', target_label: v_alt, replacement: 'yes'}\n- {source_labels: [w], regex: 'a|b', target_label: w_alt, replacement: 'yes'}\n- {source_labels: [v], regex: 'a', target_label: v_prefix, replacement: 'yes'}\n",
        ),
        case(
            "regex_case_insensitive",
            "static_configs: [{targets: ['a.invalid:1'], labels: {env: Production}}]\nrelabel_configs:\n- {source_labels: [env], regex: '(?i)prod.*', target_label: is_prod, replacement: 'yes'}\n- {source_labels: [env], regex: 'prod.*', target_label: is_prod_cs, replacement: 'yes'}\n",
        ),
        case(
            "regex_empty_match",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: x}}]\nrelabel_configs:\n- {source_labels: [missing], regex: '', target_label: empty_ok, replacement: 'yes'}\n- {source_labels: [v], regex: '', target_label: empty_no, replacement: 'yes'}\n- {source_labels: [v], regex: '(x*?)(.*)', target_label: lazy, replacement: '[$1][$2]'}\n",
        ),
        case(
            "regex_dot_newline",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: \"l1\\nl2\"}}]\nrelabel_configs:\n- {source_labels: [v], regex: '.*', target_label: dot, replacement: 'yes'}\n- {source_labels: [v], regex: '(?s).*', target_label: dot_s, replacement: 'yes'}\n",
        ),
        case(
            "regex_unicode_classes",
            "static_configs: [{targets: ['a.invalid:1'], labels: {v: 'Ωmega9'}}]\nrelabel_configs:\n- {source_labels: [v], regex: '(\\pL+)(\\p{Nd}+)', target_label: split, replacement: '$1|$2'}\n- {source_labels: [v], regex: '([[:alpha:]]*)(.*)', target_label: posix, replacement: '$1|$2'}\n",
        ),
        // --- params, scheme, path, intervals ---
        static_case(
            "params_job",
            "['p.invalid:1']",
            "params: {module: [http_2xx], target: ['x.invalid']}\n",
        ),
        static_case(
            "params_multiple_values",
            "['p.invalid:1']",
            "params: {a: ['1', '2'], b: ['x y&z']}\n",
        ),
        static_case(
            "param_label_overrides_params",
            "['p.invalid:1']",
            "params: {module: [http_2xx, second]}\nrelabel_configs:\n- {target_label: __param_module, replacement: tcp}\n- {target_label: __param_extra, replacement: 'e/1'}\n",
        ),
        static_case(
            "blackbox_pattern",
            "['https://site.invalid/a?b=c', 'other.invalid']",
            "metrics_path: /probe\nparams: {module: [http_2xx]}\nrelabel_configs:\n- {source_labels: [__address__], target_label: __param_target}\n- {source_labels: [__param_target], target_label: instance}\n- {target_label: __address__, replacement: 'blackbox.invalid:9115'}\n",
        ),
        static_case(
            "scheme_by_relabel",
            "['h.invalid', 'h2.invalid:8443']",
            "relabel_configs:\n- {target_label: __scheme__, replacement: https}\n",
        ),
        static_case(
            "metrics_path_by_relabel",
            "['h.invalid:1']",
            "relabel_configs:\n- {target_label: __metrics_path__, replacement: /federate}\n",
        ),
        static_case(
            "metrics_path_with_query_chars",
            "['h.invalid:1']",
            "metrics_path: '/m?x=1 y'\n",
        ),
        static_case(
            "custom_scrape_interval_timeout",
            "['h.invalid:1']",
            "relabel_configs:\n- {target_label: __scrape_interval__, replacement: 30s}\n- {target_label: __scrape_timeout__, replacement: 5s}\n",
        ),
        static_case(
            "job_interval_timeout",
            "['h.invalid:1']",
            "scrape_interval: 15s\nscrape_timeout: 5s\n",
        ),
        static_case(
            "interval_odd_formats",
            "['a.invalid:1', 'b.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'a.*', target_label: __scrape_interval__, replacement: 90s}\n- {source_labels: [__address__], regex: 'b.*', target_label: __scrape_interval__, replacement: 1h30m}\n",
        ),
        static_case(
            "invalid_interval_error",
            "['bad.invalid:1', 'ok.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'bad.*', target_label: __scrape_interval__, replacement: abc}\n",
        ),
        static_case(
            "zero_interval_error",
            "['bad.invalid:1', 'ok.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'bad.*', target_label: __scrape_interval__, replacement: 0s}\n",
        ),
        static_case(
            "timeout_above_interval_error",
            "['bad.invalid:1', 'ok.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: 'bad.*', target_label: __scrape_timeout__, replacement: 2m}\n",
        ),
        // --- instance, job, unicode, names ---
        static_case(
            "instance_by_relabel",
            "['h.invalid:1']",
            "relabel_configs:\n- {target_label: instance, replacement: my-instance}\n",
        ),
        static_case(
            "job_label_by_relabel",
            "['h.invalid:1']",
            "relabel_configs:\n- {target_label: job, replacement: renamed}\n",
        ),
        case(
            "unicode_values",
            "static_configs: [{targets: ['h.invalid:1'], labels: {emoji: '🚀 ok', cjk: '東京', rtl: 'שלום', combining: 'e\u{301}'}}]\n",
        ),
        case(
            "label_name_edges",
            "static_configs: [{targets: ['h.invalid:1'], labels: {_: a, _1: b, __x: c, A_b_9: d, ZZ: e}}]\n",
        ),
        static_case(
            "tmp_labels",
            "['h.invalid:1']",
            "relabel_configs:\n- {source_labels: [__address__], regex: '([^:]+):.*', target_label: __tmp_host}\n- {source_labels: [__tmp_host], target_label: host}\n",
        ),
        json_case(
            "meta_labels_removed",
            r#"[{"targets":["h.invalid:1"],"labels":{"__meta_x":"1","__hidden":"2","shown":"3"}}]"#,
            "",
        ),
        case(
            "empty_label_value_in_group",
            "static_configs: [{targets: ['h.invalid:1'], labels: {empty: '', full: x}}]\n",
        ),
        static_case(
            "drop_then_keep_order",
            six,
            "relabel_configs:\n- {action: drop, source_labels: [__address__], regex: 'a.*'}\n- {action: keep, source_labels: [__address__], regex: '[a-d].*'}\n",
        ),
        case(
            "hashmod_then_labelmap_chain",
            "static_configs: [{targets: ['a.invalid:1', 'b.invalid:2'], labels: {__meta_dc: x}}]\nrelabel_configs:\n- {action: hashmod, source_labels: [__address__], modulus: 3, target_label: __tmp_shard}\n- {action: labelmap, regex: '__tmp_(.*)'}\n- {action: labelmap, regex: '__meta_(.*)', replacement: 'meta_$1'}\n",
        ),
        static_case(
            "uppercase_address",
            "['host.invalid:1']",
            "relabel_configs:\n- {action: uppercase, source_labels: [__address__], target_label: __address__}\n",
        ),
    ]
}

/// The compared part of an answer, sorted: one JSON string per entry.
fn project(d: &TargetDiscovery) -> (BTreeSet<String>, Vec<String>) {
    let active = d
        .active_targets
        .iter()
        .map(|t| {
            serde_json::to_string(&json!({
                "scrapePool": t.scrape_pool,
                "scrapeUrl": t.scrape_url,
                "labels": t.labels,
                "discoveredLabels": t.discovered_labels,
                "scrapeInterval": t.scrape_interval,
                "scrapeTimeout": t.scrape_timeout,
            }))
            .unwrap()
        })
        .collect();
    let mut dropped: Vec<String> = d
        .dropped_targets
        .iter()
        .map(|t| serde_json::to_string(&t.discovered_labels).unwrap())
        .collect();
    dropped.sort();
    (active, dropped)
}

fn diff(name: &str, prom: &TargetDiscovery, ours: &TargetDiscovery) -> Option<String> {
    let (pa, pd) = project(prom);
    let (oa, od) = project(ours);
    // Active targets are unique in Prometheus; compare duplicates too.
    let pa_n = prom.active_targets.len();
    let oa_n = ours.active_targets.len();
    if pa == oa && pd == od && pa_n == oa_n {
        return None;
    }
    // Tell apart "only discoveredLabels differ" (what a user sees before
    // relabeling) from differences in what gets scraped.
    let strip = |d: &TargetDiscovery| {
        let mut d = d.clone();
        for t in &mut d.active_targets {
            t.discovered_labels = Default::default();
        }
        project(&d).0
    };
    let tag = if strip(prom) == strip(ours) && pd == od && pa_n == oa_n {
        " [only discoveredLabels of active targets differ]"
    } else {
        ""
    };
    let mut out = format!(
        "case {name}: DISAGREE{tag} (active {pa_n} vs ours {oa_n}, dropped {} vs ours {})\n",
        pd.len(),
        od.len()
    );
    for a in pa.difference(&oa) {
        out += &format!("  active only in prometheus: {a}\n");
    }
    for a in oa.difference(&pa) {
        out += &format!("  active only in ours:       {a}\n");
    }
    let pds: BTreeSet<_> = pd.iter().collect();
    let ods: BTreeSet<_> = od.iter().collect();
    for d in pds.difference(&ods) {
        out += &format!("  dropped only in prometheus: {d}\n");
    }
    for d in ods.difference(&pds) {
        out += &format!("  dropped only in ours:       {d}\n");
    }
    if pd.len() != od.len() {
        out += &format!("  dropped multiplicity differs: prometheus {pd:?}\n  ours {od:?}\n");
    }
    let pretty = |d: &TargetDiscovery| {
        let mut d = d.clone();
        api::normalize(&mut d);
        serde_json::to_string_pretty(&d).unwrap()
    };
    out += &format!(
        "  --- prometheus ---\n{}\n  --- ours ---\n{}\n",
        pretty(prom),
        pretty(ours)
    );
    Some(out)
}

/// The distinct `Creating target failed` errors Prometheus logged per pool.
fn logged_failures(log: &str, pool: &str) -> BTreeSet<String> {
    let pool_kv = format!(" scrape_pool={pool} ");
    log.lines()
        .filter(|l| l.contains("msg=\"Creating target failed\"") && l.contains(&pool_kv))
        .filter_map(|l| {
            let start = l.find(" err=\"")? + 6;
            let mut out = String::new();
            let mut chars = l[start..].chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next()? {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        other => out.push(other),
                    },
                    '"' => return Some(out),
                    c => out.push(c),
                }
            }
            None
        })
        .collect()
}

fn indent(body: &str) -> String {
    body.lines().map(|l| format!("  {l}\n")).collect()
}

#[test]
fn targets_agree_with_prometheus_2_42() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let names: BTreeSet<_> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "duplicate case names");

    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_string_lossy().into_owned();
    let mut config =
        String::from("global: {scrape_interval: 1m, scrape_timeout: 10s}\nscrape_configs:\n");
    for c in &cases {
        for (file, content) in &c.files {
            let p = dir.path().join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        config += &format!("- job_name: {}\n", c.name);
        config += &indent(&c.body.replace("{DIR}", &dir_path));
    }
    let cfg_path = dir.path().join("prometheus.yml");

    let t0 = std::time::Instant::now();
    let prom = common::Prometheus::start_in(dir, &config);
    eprintln!("prometheus ready after {:?}", t0.elapsed());
    // Our side: exactly what `promshard targets` runs.
    let cfg =
        config::load_file(&cfg_path).unwrap_or_else(|e| panic!("our config loader: {e}\n{config}"));

    let jobs: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let missing = prom.wait_for_pools(&jobs, Duration::from_secs(90));
    // One more discovery/scrape-manager round (5s each) so that late
    // provider updates are in.
    eprintln!("all pools listed after {:?}", t0.elapsed());
    std::thread::sleep(Duration::from_secs(6));

    // Failed targets are logged at each sync; all syncs are done by now.
    let log = prom.log();
    eprintln!("prometheus log: {} lines", log.lines().count());
    let mut agree = 0;
    let mut report = String::new();
    for c in &cases {
        let theirs = prom.targets(Some(c.name));
        let (ours, our_failures) = match api::targets_once(&cfg, Some(c.name)) {
            Ok(x) => x,
            Err(e) => {
                report += &format!("case {}: DISAGREE: our discovery failed: {e}\n", c.name);
                continue;
            }
        };
        let mut problems = diff(c.name, &theirs, &ours).unwrap_or_default();
        // Targets in neither list: the same errors must be reported.
        let their_errors = logged_failures(&log, c.name);
        let our_errors: BTreeSet<String> = our_failures.iter().map(|f| f.to_string()).collect();
        if their_errors != our_errors {
            problems += &format!(
                "case {}: DISAGREE on failed targets\n  prometheus logged: {their_errors:?}\n  ours:              {our_errors:?}\n",
                c.name
            );
        }
        if problems.is_empty() {
            agree += 1;
        } else {
            report += &problems;
        }
    }
    let summary = format!("{} cases, {} agree", cases.len(), agree);
    eprintln!("compared after {:?}", t0.elapsed());
    eprintln!("{report}\n{summary}");
    if !missing.is_empty() {
        eprintln!("pools never listed by Prometheus: {missing:?}");
    }
    assert_eq!(agree, cases.len(), "{summary}\n{report}");
}
