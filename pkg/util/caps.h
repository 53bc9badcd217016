/*
 * Every growable buffer in stasis has a cap, and the caps live here so that a
 * reviewer sees all of them at once. Going over a cap returns ST_ETOOBIG.
 */
#ifndef ST_PKG_UTIL_CAPS_H
#define ST_PKG_UTIL_CAPS_H

/* An AdmissionReview body; kube-apiserver itself limits objects to ~3 MiB. */
#define ST_CAP_ADMISSION_BODY (8u * 1024u * 1024u)
/* A JSON Patch document built or applied by us. */
#define ST_CAP_PATCH (8u * 1024u * 1024u)
/* A YAML or JSON configuration file. */
#define ST_CAP_CONFIG (1u * 1024u * 1024u)
/* A PEM file (certificate chain or key). */
#define ST_CAP_PEM (256u * 1024u)
/* A small control-API request body (agent freeze/thaw). */
#define ST_CAP_CONTROL_BODY (64u * 1024u)
/* An S3 XML error or listing page. */
#define ST_CAP_S3_XML (16u * 1024u * 1024u)
/* A JSON value's nesting depth accepted from the network. */
#define ST_CAP_JSON_DEPTH 64

#endif
