/* An image's metadata.yaml (architecture, creation_date, properties, file templates) and the
 * rendering of its file templates into an instance's rootfs. Pure functions plus file writes. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"

struct lxm_image_metadata {
	char *architecture;    /* as written ("x86_64", "amd64", ...); required */
	int64_t creation_date; /* unix seconds; required */
	int64_t expiry_date;   /* unix seconds, 0 when absent */
	json_t *properties;    /* object of strings (os, release, description, ...); never NULL */
	json_t *templates;     /* object: rootfs path -> {"when": [triggers], "template": file in
				* templates/, "properties": {...}, "create_only": bool}; never NULL */
	json_t *raw;	       /* the whole document as JSON */
};

/* Parses and checks metadata.yaml: 400 errors naming the field ("metadata.yaml: creation_date:
 * not a number"). Unknown top-level keys are kept in raw and otherwise ignored (as LXD does).
 * Template paths must be absolute without "..", template files plain names without "/",
 * triggers among create, copy, start. */
int lxm_image_metadata_parse(const char *text, size_t len, struct lxm_image_metadata **ret,
			     struct lxm_error **err);
void lxm_image_metadata_free(struct lxm_image_metadata *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lxm_image_metadata *, lxm_image_metadata_free)

/* The context a template sees, as a JSON object:
 *   {"instance": {"name": "web1", "type": "container", "architecture": "x86_64", ...},
 *    "config": {key: value, ...}, "devices": {...}, "properties": {... the template's ...},
 *    "trigger": "create"}
 * "container" is an alias of "instance" (older images use it). */

/* Renders a template in the subset of pongo2 (Django) syntax LXD images use:
 *   {{ instance.name }}  {{ container.name }}  {{ properties.key }}  {{ trigger }}
 *   {{ config_get("user.x", "default") }}   filters: |default:"x" |lower |upper
 *   {% if EXPR %} ... {% elif EXPR %} ... {% else %} ... {% endif %} where EXPR is a value,
 *   "not VALUE", or VALUE == / != VALUE (values: names, "strings", config_get(...))
 *   {# comments #}
 * and also: EXPR and EXPR, EXPR or EXPR, ( EXPR ), integer literals, true/false/none, and
 * pongo2's whitespace control ({%- -%}, {{- -}}). Unknown names render as "" (as pongo2 does),
 * booleans as True/False; a syntax error, an unknown tag, filter or function is a 400
 * "template line N: ...". The output is capped at 1 MiB (a 400 beyond). */
int lxm_template_render(const char *tpl, size_t len, const json_t *ctx, char **ret,
			struct lxm_error **err);

/* Applies the image's templates for trigger to rootfs: each template whose "when" lists trigger
 * is read from templates_dir, rendered with ctx (its "properties" and "trigger" filled in) and
 * written to its path inside rootfs, resolved in the rootfs (a symlink in the rootfs can never
 * lead the write outside it), mode 0644, owner root, parent directories created. create_only
 * templates leave an existing file alone. The file is written beside its target and renamed
 * over it: a symlink at the path itself is replaced, never followed. Template files are read
 * from templates_dir without following symlinks. */
int lxm_image_apply_templates(const struct lxm_image_metadata *m, const char *templates_dir,
			      const char *rootfs, const char *trigger, const json_t *ctx,
			      struct lxm_error **err);
