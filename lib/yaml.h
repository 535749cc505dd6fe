/* YAML <-> JSON for the CLI's human views (`info`, `show`) and edits (`profile edit`, later
 * `config edit`), with libyaml. lxm's data model is JSON, and the YAML a user reads and edits is a
 * view of it, so the mapping is chosen to round-trip:
 *
 * JSON -> YAML (lxm_yaml_from_json): block style, object keys in the object's own order, empty
 * objects as {} and empty arrays as [], null as null. A string is written plain when it would read
 * back as a string in any YAML 1.1 or 1.2 reader, and quoted otherwise ("", "true", "yes", "123",
 * "1.5", "0x1f", "~", "null"...). Strings with a newline use a literal block (|). libyaml itself
 * quotes what cannot be plain at all (": ", leading "- ", " #", leading or trailing spaces).
 * Timestamps ("2024-05-01T10:00:00Z") stay plain, as lxc prints them: lxm reads them back as
 * strings (a YAML 1.1 reader such as PyYAML would see a datetime).
 *
 * YAML -> JSON (lxm_yaml_to_json): one document. Plain scalars `true` and `false` become booleans,
 * `null`, `~` and the empty plain scalar become null, decimal integers written without a sign or
 * leading zeros other than a minus ("0", "42", "-7") that fit in 64 bits become integers. Every
 * other scalar, and every quoted or block scalar, is a string. The rule is deliberately narrow:
 * config values are strings, and each conversion it makes turns back into the exact text the user
 * wrote ("2" -> 2 -> "2"), so `limits.cpu: 2` and `limits.cpu: "2"` mean the same thing, while
 * `mode: 0755`, `x: 1.0`, `flag: yes` stay the strings the user typed. Anchors and aliases are
 * refused. Mapping keys must be scalars and are always strings; a duplicate key is an error. */
#pragma once

/* lib/ is on the include path, so this file shadows libyaml's own <yaml.h>. Pulling libyaml in
 * from here keeps `#include <yaml.h>` meaning "both APIs" for files that need libyaml itself
 * (include it with angle brackets there: a quoted include from lib/ skips the next lookup). */
#include_next <yaml.h>

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Renders j as a YAML document ending in a newline into a malloc'ed string. Returns 0, -ENOMEM,
 * or -EINVAL when j holds something YAML cannot express (libyaml refused the event stream). */
int lxm_yaml_from_json(const json_t *j, char **ret);

/* Parses text[0..len) (one YAML document; a NUL-free buffer) into JSON following the rule above.
 * An empty or comment-only text gives JSON null. On a syntax error returns -EINVAL and, when
 * ret_errmsg is non-NULL, a malloc'ed message with the position: "line 3, column 5: mapping values
 * are not allowed in this context". */
int lxm_yaml_to_json(const char *text, size_t len, json_t **ret, char **ret_errmsg);

/* Whether a plain YAML scalar with this text would load as something other than a string in a
 * YAML 1.1 or 1.2 reader (or in lxm_yaml_to_json), so that a string with this text must be
 * quoted. Exposed for tests and for callers that print single values. */
bool lxm_yaml_string_needs_quotes(const char *s);
