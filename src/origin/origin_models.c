/* src/origin/origin_models.c: the model store's rules for writes under models/.
 *
 * Layout (docs/origin.md): models/NAME/VERSION/model.onnx, the file of a published version
 * (other files may sit beside it: weights, configs), models/NAME/manifest.json, the
 * versions with their digests and the version policy, and models/index.json, the names of
 * the store's models (what an edge reads at start). A write whose NAME or VERSION the
 * edges could not read is refused, so a typo cannot leave a version no edge ever finds. The manifest's full meaning is the edge's business (src/predict); here it is
 * only checked to be a JSON object of the right model, so a broken upload cannot replace a
 * good manifest. Pure: no I/O. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "origin/origin_int.h"
#include "predict/predict.h"

static int version_ok(const char *s, size_t n)
{
    if (n == 0 || n > 15 || (s[0] == '0' && n > 1))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int origin__model_path(const char *rel, struct origin_model_path *out, char *msg, size_t mlen)
{
    const char *p, *slash;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (strncmp(rel, "models/", 7) != 0) {
        if (strcmp(rel, "models") != 0)
            return 0;
        snprintf(msg, mlen,
                 "models: the store's root; write models/NAME/manifest.json or "
                 "models/NAME/VERSION/model.onnx");
        return -EINVAL;
    }
    p = rel + 7;
    if (!strcmp(p, "index.json")) {
        out->index = 1;
        return 1;
    }
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    if (!predict_model_name_valid(p, n)) {
        snprintf(msg, mlen,
                 "model NAME '%.*s' must be 1-63 letters, digits, '_', '-' or '.' (not first)",
                 (int)(n > 80 ? 80 : n), p);
        return -EINVAL;
    }
    memcpy(out->name, p, n);
    out->name[n] = '\0';
    if (!slash) {
        snprintf(msg, mlen,
                 "models/%s: expected models/NAME/manifest.json or "
                 "models/NAME/VERSION/model.onnx",
                 out->name);
        return -EINVAL;
    }
    p = slash + 1;
    if (strcmp(p, "manifest.json") == 0) {
        out->manifest = 1;
        return 1;
    }
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    if (!version_ok(p, n)) {
        snprintf(msg, mlen, "model VERSION '%.*s' must be a decimal number (1-15 digits)",
                 (int)(n > 80 ? 80 : n), p);
        return -EINVAL;
    }
    memcpy(out->version, p, n);
    out->version[n] = '\0';
    if (!slash || !slash[1]) {
        snprintf(msg, mlen,
                 "models/%s/%s: a version is a directory: models/NAME/VERSION/model.onnx",
                 out->name, out->version);
        return -EINVAL;
    }
    return 1;
}

int origin__manifest_check(const char *body, size_t len, const char *name, char *msg, size_t mlen)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je), *v;
    int rc = -EINVAL;

    if (!root) {
        snprintf(msg, mlen, "manifest.json: line %d: %s", je.line, je.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        snprintf(msg, mlen, "manifest.json: expected a JSON object");
        goto out;
    }
    v = json_object_get(root, "name");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), name) != 0)) {
        snprintf(msg, mlen, "manifest.json: \"name\" must be \"%s\" (the NAME of the path)", name);
        goto out;
    }
    v = json_object_get(root, "versions");
    if (!json_is_object(v)) {
        snprintf(msg, mlen, "manifest.json: \"versions\" must be an object");
        goto out;
    }
    const char *key;
    json_t *ent;
    json_object_foreach(v, key, ent)
    {
        if (!version_ok(key, strlen(key)) || !json_is_object(ent)) {
            snprintf(msg, mlen,
                     "manifest.json: versions: '%.32s' must be a decimal version with an "
                     "object",
                     key);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int origin__index_check(const char *body, size_t len, char *msg, size_t mlen)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je), *v, *names;
    size_t i;
    int rc = -EINVAL;

    if (!root) {
        snprintf(msg, mlen, "index.json: line %d: %s", je.line, je.text);
        return -EINVAL;
    }
    names = json_object_get(root, "models");
    if (!json_is_object(root) || !json_is_array(names)) {
        snprintf(msg, mlen, "index.json: expected {\"models\": [NAME, ...]}");
        goto out;
    }
    json_array_foreach(names, i, v)
    {
        if (!json_is_string(v) ||
            !predict_model_name_valid(json_string_value(v), json_string_length(v))) {
            snprintf(msg, mlen,
                     "index.json: models[%zu]: expected a model NAME (1-63 letters, "
                     "digits, '_', '-' or '.', not first)",
                     i);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
