/*
 * dsc_utf8.h - UTF-8 validation and lossy decoding with the reference's exact rules.
 *
 * "Valid" is Rust's str: no overlong forms, no surrogates, nothing above U+10FFFF. Lossy
 * conversion replaces each maximal invalid subpart with one U+FFFD, as Rust's
 * String::from_utf8_lossy (and the Unicode recommended practice) does, which is what the
 * reference's decoder produces.
 */
#ifndef DSC_UTF8_H
#define DSC_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0..len) is valid UTF-8; else 0 and *bad_offset (if not NULL) = the first bad byte. */
int dsc_utf8_validate(const char *s, size_t len, size_t *bad_offset);

/*
 * Length of the valid character starting at s[0] (1..4), given `avail` bytes; 0 if the bytes
 * there are not a valid character. Used to step through text already validated.
 */
size_t dsc_utf8_char_len(const unsigned char *s, size_t avail);
/* The code point of the valid character at s of length n (from dsc_utf8_char_len). */
uint32_t dsc_utf8_decode(const unsigned char *s, size_t n);
/* Encode code point cp (<= 0x10FFFF) into out[0..4); returns its length. */
size_t dsc_utf8_encode(uint32_t cp, char *out);

/*
 * One step of lossy decoding at s[0..avail): returns the number of bytes consumed and sets
 * *valid to 1 (a whole valid character) or 0 (an invalid subpart: emit one U+FFFD). When the
 * bytes are a valid but incomplete prefix of a character that runs past `avail`, returns 0 with
 * *valid = 0: the caller either waits for more bytes (streaming) or replaces them at the end.
 */
size_t dsc_utf8_lossy_step(const unsigned char *s, size_t avail, int *valid);

/* Unicode White_Space (what Rust's char::is_whitespace and regex \s accept). */
int dsc_utf8_is_space(uint32_t cp);

#endif
