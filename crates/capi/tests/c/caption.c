/*
 * The C ABI as a C program uses it: load, caption a file, stream, caption
 * bytes and pixels, encoder progress and a cancel from it, cancel from a
 * second thread, bad input, NULL arguments, and a session that outlives its
 * model handle.
 *
 * usage: caption MODEL MMPROJ IMAGE BAD_IMAGE
 *
 * Prints one tab-separated line per check; tests/c_api.rs compares them with
 * what the Rust library gives for the same inputs.
 */
#include "smolvlm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 16

static void fail(const char *what, smolvlm_error *err) {
    fprintf(stderr, "%s: [%s] %s\n", what, smolvlm_error_kind(err), smolvlm_error_message(err));
    smolvlm_error_free(err);
    exit(1);
}

/* Prints "label<TAB>text" and frees the text; on failure, the error. */
static void print_result(const char *label, char *text, smolvlm_error *err) {
    if (text == NULL) {
        printf("%s\terror\t%s\t%d\t%s\n", label, smolvlm_error_kind(err),
               smolvlm_error_is_transient(err) ? 1 : 0, smolvlm_error_message(err));
        smolvlm_error_free(err);
    } else {
        printf("%s\tok\t%s\n", label, text);
        smolvlm_string_free(text);
    }
}

/* Streaming: the pieces, appended. */
struct collected {
    char text[4096];
    size_t len;
    int pieces;
};

static void collect(const char *piece, size_t len, void *user) {
    struct collected *c = user;
    if (piece[len] != '\0' || strlen(piece) != len) {
        fprintf(stderr, "piece is not NUL-terminated at len\n");
        exit(1);
    }
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    c->pieces++;
}

/* Cancelling from a second thread: the first piece wakes the canceller,
 * and generation goes on only once the flag is set. */
struct cancel_run {
    smolvlm_cancel *cancel;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int started;  /* a piece arrived, or the caption ended */
    int pieces;
};

static void on_piece_then_wait(const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    struct cancel_run *run = user;
    pthread_mutex_lock(&run->lock);
    run->pieces++;
    run->started = 1;
    pthread_cond_broadcast(&run->changed);
    pthread_mutex_unlock(&run->lock);
    while (!smolvlm_cancel_is_set(run->cancel)) {
        /* The other thread sets it; nothing else to do here. */
    }
}

static void *canceller(void *arg) {
    struct cancel_run *run = arg;
    pthread_mutex_lock(&run->lock);
    while (!run->started) {
        pthread_cond_wait(&run->changed, &run->lock);
    }
    pthread_mutex_unlock(&run->lock);
    smolvlm_cancel_set(run->cancel);
    return NULL;
}

/* Encoder progress: what was told, and a cancel at one encode and layer. */
struct progress_run {
    smolvlm_cancel *cancel; /* NULL: never cancel */
    size_t stop_encode, stop_layer;
    int calls;
    size_t encode, layer, encodes, layers;
    float fraction;
};

static void on_progress(const smolvlm_progress *p, void *user) {
    struct progress_run *run = user;
    run->calls++;
    run->encode = p->encode;
    run->layer = p->layer;
    run->encodes = p->encodes;
    run->layers = p->layers;
    run->fraction = p->fraction;
    if (run->cancel != NULL && p->encode == run->stop_encode && p->layer == run->stop_layer) {
        smolvlm_cancel_set(run->cancel);
    }
}

/* A batch's results: printed as they come, with their order. */
struct batch_run {
    size_t calls;
    int in_order;
};

static void on_batch_result(const smolvlm_batch_result *r, void *user) {
    struct batch_run *run = user;
    if (r->index != run->calls) {
        run->in_order = 0;
    }
    run->calls++;
    if (r->error != NULL) {
        printf("batch-%zu\terror\t%s\t%d\t%s\n", r->index, smolvlm_error_kind(r->error),
               smolvlm_error_is_transient(r->error) ? 1 : 0, smolvlm_error_message(r->error));
    } else {
        long dup = r->duplicate_of == SIZE_MAX ? -1 : (long)r->duplicate_of;
        printf("batch-%zu\tok\t%s\n", r->index, r->text);
        printf("batch-%zu-copy-of\tok\t%ld\n", r->index, dup);
    }
}

/* A video's progress: encodes begun, and how many encodes each frame took. */
struct frames_run {
    int begun;
    size_t encodes;
};

static void on_frame(const smolvlm_progress *p, void *user) {
    struct frames_run *run = user;
    if (p->layer == 0) {
        run->begun++;
    }
    if (p->encodes > run->encodes) {
        run->encodes = p->encodes;
    }
}

/* Re-entry: a callback that calls back into its own session. */
struct reentry {
    smolvlm_session *session;
    const char *image;
    char kind[64];
    int tried;
};

static void call_back_in(const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    struct reentry *r = user;
    if (r->tried) {
        return;
    }
    r->tried = 1;
    smolvlm_error *err = NULL;
    char *text = smolvlm_caption_file(r->session, r->image, NULL, MAX_TOKENS, &err);
    if (text != NULL) {
        snprintf(r->kind, sizeof r->kind, "%s", "ok");
        smolvlm_string_free(text);
    } else {
        snprintf(r->kind, sizeof r->kind, "%s", smolvlm_error_kind(err));
        smolvlm_error_free(err);
    }
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size > 0 ? (size_t)size : 1);
    *len = fread(data, 1, (size_t)size, f);
    fclose(f);
    return data;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL MMPROJ IMAGE BAD_IMAGE VIDEO\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *mmproj_path = argv[2];
    const char *image = argv[3], *bad = argv[4], *video = argv[5];
    smolvlm_error *err = NULL;

    printf("version\tok\t%s\n", smolvlm_version());

    smolvlm_model *model = smolvlm_model_load(model_path, mmproj_path, 2, &err);
    if (model == NULL) {
        fail("load", err);
    }
    if (err != NULL) {
        fprintf(stderr, "a successful call left an error\n");
        return 1;
    }
    smolvlm_session *session = smolvlm_session_new(model, &err);
    if (session == NULL) {
        fail("session", err);
    }

    /* Encoder progress: every encode of the image, every layer. */
    smolvlm_options *observed = smolvlm_options_new();
    smolvlm_options_set_max_tokens(observed, MAX_TOKENS);
    struct progress_run progress = {NULL, 0, 0, 0, 0, 0, 0, 0, 0.0f};
    smolvlm_options_set_progress(observed, on_progress, &progress);
    char *text = smolvlm_caption_file_with(session, image, NULL, observed, NULL, NULL, &err);
    if (text == NULL) {
        fail("progress", err);
    }
    smolvlm_string_free(text);
    printf("progress\tok\t%d\t%zu\t%zu\t%.2f\n", progress.calls, progress.encodes, progress.layers,
           (double)progress.fraction);
    smolvlm_options_free(observed);

    /* The simple call. */
    text = smolvlm_caption_file(session, image, "Describe this image.", MAX_TOKENS, &err);
    print_result("file", text, err);

    /* Streaming, with options. */
    smolvlm_options *options = smolvlm_options_new();
    smolvlm_options_set_max_tokens(options, MAX_TOKENS);
    struct collected streamed = {{0}, 0, 0};
    text = smolvlm_caption_file_with(session, image, NULL, options, collect, &streamed, &err);
    if (text == NULL) {
        fail("stream", err);
    }
    printf("stream\tok\t%s\n", streamed.text);
    printf("stream-returned\tok\t%s\n", text);
    printf("stream-pieces\tok\t%d\n", streamed.pieces);
    smolvlm_string_free(text);

    /* Encoded bytes in memory. */
    size_t len = 0;
    unsigned char *bytes = read_file(image, &len);
    if (bytes == NULL) {
        fprintf(stderr, "cannot read %s\n", image);
        return 1;
    }
    text = smolvlm_caption_bytes_with(session, bytes, len, "Describe this image.", options, NULL, NULL, &err);
    print_result("bytes", text, err);
    free(bytes);

    /* Decoded pixels: 64 x 48 packed RGB. */
    unsigned char pixels[64 * 48 * 3];
    for (int y = 0; y < 48; y++) {
        for (int x = 0; x < 64; x++) {
            unsigned char *p = pixels + (y * 64 + x) * 3;
            p[0] = (unsigned char)(x * 4);
            p[1] = (unsigned char)(y * 5);
            p[2] = (unsigned char)((x + y) * 2);
        }
    }

    /* A cancel set from the progress callback stops the encode at once. */
    smolvlm_options *stoppable = smolvlm_options_new();
    smolvlm_options_set_max_tokens(stoppable, MAX_TOKENS);
    smolvlm_cancel *stop = smolvlm_cancel_new();
    smolvlm_options_set_cancel(stoppable, stop);
    struct progress_run stopping = {stop, 3, 1, 0, 0, 0, 0, 0, 0.0f};
    smolvlm_options_set_progress(stoppable, on_progress, &stopping);
    text = smolvlm_caption_rgb_with(session, pixels, 64, 48, NULL, stoppable, NULL, NULL, &err);
    print_result("progress-cancel", text, err);
    printf("progress-stopped-at\tok\t%zu.%zu\n", stopping.encode, stopping.layer);
    smolvlm_options_free(stoppable);
    smolvlm_cancel_free(stop);

    text = smolvlm_caption_rgb_with(session, pixels, 64, 48, NULL, options, NULL, NULL, &err);
    print_result("rgb", text, err);

    /* Cancel from a second thread, mid-generation. */
    struct cancel_run run;
    run.cancel = smolvlm_cancel_new();
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.changed, NULL);
    run.started = 0;
    run.pieces = 0;
    smolvlm_options *cancellable = smolvlm_options_new();
    smolvlm_options_set_max_tokens(cancellable, 200);
    smolvlm_options_set_cancel(cancellable, run.cancel);
    pthread_t thread;
    pthread_create(&thread, NULL, canceller, &run);
    text = smolvlm_caption_file_with(session, image, NULL, cancellable, on_piece_then_wait, &run, &err);
    pthread_mutex_lock(&run.lock);
    run.started = 1; /* in case no piece ever came */
    pthread_cond_broadcast(&run.changed);
    pthread_mutex_unlock(&run.lock);
    pthread_join(thread, NULL);
    print_result("cancel", text, err);
    printf("cancel-pieces\tok\t%d\n", run.pieces);
    smolvlm_options_free(cancellable);
    smolvlm_cancel_free(run.cancel);

    /* A callback calling into its own session is refused, and the caption
     * it interrupted goes on to its end. */
    struct reentry reentry = {session, image, "none", 0};
    text = smolvlm_caption_file_with(session, image, NULL, options, call_back_in, &reentry, &err);
    print_result("reentered-outer", text, err);
    printf("reentered\tok\t%s\n", reentry.kind);

    /* A video: each sampled frame is one overview encode. */
    smolvlm_options *video_options = smolvlm_options_new();
    smolvlm_options_set_max_tokens(video_options, MAX_TOKENS);
    struct frames_run frames = {0, 0};
    smolvlm_options_set_progress(video_options, on_frame, &frames);
    text = smolvlm_caption_video_file(session, video, "What happens?", video_options, NULL, NULL, &err);
    print_result("video", text, err);
    printf("video-encodes\tok\t%d\t%zu\n", frames.begun, frames.encodes);
    text = smolvlm_caption_video_file(session, bad, "What happens?", video_options, NULL, NULL, &err);
    print_result("video-bad", text, err);
    text = smolvlm_caption_video_file(session, NULL, "What happens?", video_options, NULL, NULL, &err);
    print_result("video-null", text, err);
    smolvlm_options_free(video_options);

    /* A batch (one session: valgrind runs this program in CI), results in
     * order, a copy answered once, bad
     * files as their own results. */
    const char *batch_paths[] = {image, bad, image, "/nonexistent/image.png"};
    struct batch_run batch = {0, 1};
    smolvlm_options *batch_options = smolvlm_options_new();
    smolvlm_options_set_max_tokens(batch_options, MAX_TOKENS);
    int64_t reported = smolvlm_caption_files(model, batch_paths, 4, NULL, batch_options, 1, true,
                                             on_batch_result, &batch, &err);
    if (reported < 0) {
        fail("smolvlm_caption_files", err);
    }
    printf("batch\tok\t%lld\t%zu\t%d\n", (long long)reported, batch.calls, batch.in_order);
    const char *null_paths[] = {image, NULL};
    reported = smolvlm_caption_files(model, null_paths, 2, NULL, batch_options, 1, false,
                                     on_batch_result, &batch, &err);
    printf("batch-null-path\t%s\t%s\t%s\n", reported == -1 ? "error" : "ok",
           smolvlm_error_kind(err), smolvlm_error_message(err));
    smolvlm_error_free(err);
    err = NULL;
    smolvlm_options_free(batch_options);

    /* Bad input: an error, not a crash, and the session goes on. */
    text = smolvlm_caption_file(session, bad, NULL, MAX_TOKENS, &err);
    print_result("bad", text, err);
    text = smolvlm_caption_file(session, "/nonexistent/image.png", NULL, MAX_TOKENS, &err);
    print_result("missing", text, err);
    text = smolvlm_caption_file(session, NULL, NULL, MAX_TOKENS, &err);
    print_result("null-path", text, err);
    text = smolvlm_caption_file(NULL, image, NULL, MAX_TOKENS, &err);
    print_result("null-session", text, err);
    smolvlm_options_set_max_tokens(options, 0);
    text = smolvlm_caption_file_with(session, image, NULL, options, NULL, NULL, &err);
    print_result("zero-tokens", text, err);
    smolvlm_model *none = smolvlm_model_load("/nonexistent/model.gguf", mmproj_path, 0, &err);
    printf("load-missing\t%s\t%s\n", none == NULL ? "error" : "ok", smolvlm_error_kind(err));
    smolvlm_error_free(err);
    err = NULL;

    /* The session keeps the model alive after the model handle is freed. */
    smolvlm_model_free(model);
    text = smolvlm_caption_file(session, image, "Describe this image.", MAX_TOKENS, &err);
    print_result("after-model-free", text, err);

    smolvlm_options_free(options);
    smolvlm_session_free(session);
    /* NULL is accepted by every _free. */
    smolvlm_session_free(NULL);
    smolvlm_model_free(NULL);
    smolvlm_options_free(NULL);
    smolvlm_cancel_free(NULL);
    smolvlm_error_free(NULL);
    smolvlm_string_free(NULL);
    printf("done\tok\t\n");
    return 0;
}
