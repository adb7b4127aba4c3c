// alloc-probe: load a GGUF model with n_gpu_layers, create one context, print llama.cpp's own
// allocation log (model / KV / compute / output buffer sizes per backend), the per-buffer-type
// memory breakdown, and the device free/total memory at each stage; optionally decode a
// batch of N tokens (default 1) so the CUDA pool and cuBLAS are exercised; then exit.
//
// usage: alloc-probe -m FILE [-ngl N] [-c N_CTX] [-fa on|off|auto] [-b N_BATCH] [-ub N_UBATCH]
//                    [-np N_SEQ] [-ctk TYPE] [-ctv TYPE] [--swa-full] [--kv-unified]
//                    [--no-mmap] [--decode N] [--no-kv-offload] [--quiet-debug]
//                    [--mmproj FILE [--no-mmproj-offload] [--mmproj-fa on|off|auto]]
//        alloc-probe -m FILE --quant-dry-run q4_0|q4_k_m   (llama-quantize --dry-run: prints the
//                    type llama.cpp would give each tensor; used to check make_ggufs.py's type mix)
// defaults follow llama.cpp's common/ (llama-cli, llama-server): n_batch 2048, n_ubatch 512,
// n_seq 1, swa_full off, kv_unified off, f16 KV cache, mmap on.

#include "llama.h"
#include "llama-ext.h"      // llama_get_memory_breakdown (staging API)
#include "ggml-backend.h"
#include "mtmd.h"        // --mmproj: the vision projector through libmtmd, as llama-server loads it

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static bool g_debug = true;
static bool g_last_skipped = false;

// debug lines that are pure per-tensor / per-node noise for this purpose (thousands per run)
static bool noisy_debug(const char * text) {
    static const char * prefixes[] = { "create_tensor:", "llama_graph_n_input_tensors:", "repack:", "graph_get_cb:" };
    for (const char * p : prefixes) {
        if (strncmp(text, p, strlen(p)) == 0) return true;
    }
    return false;
}

static void log_cb(enum ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_CONT) {
        if (g_last_skipped) return;
    } else {
        g_last_skipped = level == GGML_LOG_LEVEL_DEBUG && (!g_debug || noisy_debug(text));
        if (g_last_skipped) return;
    }
    fputs(text, stderr);
    fflush(stderr);
}

static double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

static const double MiB = 1024.0 * 1024.0;

static void print_dev_mem(const char * stage) {
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) continue;
        size_t free_b = 0, total_b = 0;
        ggml_backend_dev_memory(dev, &free_b, &total_b);
        fprintf(stderr, "probe: mem stage=%s dev=%s free_mib=%.2f total_mib=%.2f used_mib=%.2f\n",
                stage, ggml_backend_dev_name(dev), free_b / MiB, total_b / MiB, (total_b - free_b) / MiB);
    }
    fflush(stderr);
}

static ggml_type parse_type(const char * s) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * name = ggml_type_name((ggml_type) t);
        if (name && strcmp(name, s) == 0) return (ggml_type) t;
    }
    fprintf(stderr, "probe: unknown cache type '%s'\n", s);
    exit(2);
}

int main(int argc, char ** argv) {
    std::string model_path;
    int ngl = 99, n_ctx = 4096, n_batch = 2048, n_ubatch = 512, n_seq = 1, n_decode = 1;
    std::string fa = "on";
    ggml_type tk = GGML_TYPE_F16, tv = GGML_TYPE_F16;
    bool swa_full = false, kv_unified = false, mmap = true, kv_offload = true;
    std::string quant_dry_run;
    std::string mmproj, mmproj_fa;
    bool mmproj_gpu = true;

    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) { fprintf(stderr, "probe: missing value for %s\n", a.c_str()); exit(2); }
            return argv[++i];
        };
        if      (a == "-m")   model_path = next();
        else if (a == "-ngl") ngl = atoi(next());
        else if (a == "-c")   n_ctx = atoi(next());
        else if (a == "-fa")  fa = next();
        else if (a == "-b")   n_batch = atoi(next());
        else if (a == "-ub")  n_ubatch = atoi(next());
        else if (a == "-np")  n_seq = atoi(next());
        else if (a == "-ctk") tk = parse_type(next());
        else if (a == "-ctv") tv = parse_type(next());
        else if (a == "--swa-full")      swa_full = true;
        else if (a == "--kv-unified")    kv_unified = true;
        else if (a == "--no-mmap")       mmap = false;
        else if (a == "--no-kv-offload") kv_offload = false;
        else if (a == "--decode")        n_decode = atoi(next());
        else if (a == "--quiet-debug")   g_debug = false;
        else if (a == "--quant-dry-run") quant_dry_run = next();
        else if (a == "--mmproj")        mmproj = next();
        else if (a == "--no-mmproj-offload") mmproj_gpu = false;
        else if (a == "--mmproj-fa")     mmproj_fa = next();
        else { fprintf(stderr, "probe: unknown argument %s\n", a.c_str()); return 2; }
    }
    if (model_path.empty()) { fprintf(stderr, "probe: -m FILE is required\n"); return 2; }

    llama_log_set(log_cb, nullptr);
    const double t0 = now_s();
    llama_backend_init();

    if (!quant_dry_run.empty()) {
        llama_model_quantize_params qp = llama_model_quantize_default_params();
        qp.ftype   = quant_dry_run == "q4_0" ? LLAMA_FTYPE_MOSTLY_Q4_0 : LLAMA_FTYPE_MOSTLY_Q4_K_M;
        qp.dry_run = true;
        qp.nthread = 1;
        const uint32_t r = llama_model_quantize(model_path.c_str(), "/dev/null", &qp);
        fprintf(stderr, "probe: quant_dry_run ftype=%s ret=%u\n", quant_dry_run.c_str(), r);
        return r == 0 ? 0 : 1;
    }

    fprintf(stderr, "probe: args model=%s ngl=%d n_ctx=%d fa=%s n_batch=%d n_ubatch=%d n_seq=%d type_k=%s type_v=%s "
                    "swa_full=%d kv_unified=%d mmap=%d kv_offload=%d decode=%d\n",
            model_path.c_str(), ngl, n_ctx, fa.c_str(), n_batch, n_ubatch, n_seq,
            ggml_type_name(tk), ggml_type_name(tv), swa_full, kv_unified, mmap, kv_offload, n_decode);
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        fprintf(stderr, "probe: device %zu name=%s desc=%s\n", i, ggml_backend_dev_name(dev), ggml_backend_dev_description(dev));
    }
    print_dev_mem("start");

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    mp.load_mode    = mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;

    double t = now_s();
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { fprintf(stderr, "probe: FAILED to load model\n"); return 1; }
    char desc[256];
    llama_model_desc(model, desc, sizeof(desc));
    fprintf(stderr, "probe: model_loaded desc=\"%s\" size_bytes=%llu n_layer=%d load_s=%.2f\n",
            desc, (unsigned long long) llama_model_size(model), llama_model_n_layer(model), now_s() - t);
    print_dev_mem("after_model");

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx      = n_ctx;
    cp.n_batch    = n_batch;
    cp.n_ubatch   = n_ubatch;
    cp.n_seq_max  = n_seq;
    cp.type_k     = tk;
    cp.type_v     = tv;
    cp.swa_full   = swa_full;
    cp.kv_unified = kv_unified;
    cp.offload_kqv = kv_offload;
    cp.flash_attn_type = fa == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                       : fa == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;

    t = now_s();
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "probe: FAILED to create context\n"); llama_model_free(model); return 1; }
    fprintf(stderr, "probe: context_created n_ctx=%u n_ctx_seq=%u ctx_s=%.2f\n", llama_n_ctx(ctx), llama_n_ctx_seq(ctx), now_s() - t);
    print_dev_mem("after_context");

    {
        size_t tot_model = 0, tot_ctx = 0, tot_comp = 0;
        for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx)) {
            fprintf(stderr, "probe: breakdown buft=%s model_mib=%.2f context_mib=%.2f compute_mib=%.2f model_bytes=%zu context_bytes=%zu compute_bytes=%zu\n",
                    ggml_backend_buft_name(buft), mb.model / MiB, mb.context / MiB, mb.compute / MiB, mb.model, mb.context, mb.compute);
            tot_model += mb.model; tot_ctx += mb.context; tot_comp += mb.compute;
        }
        fprintf(stderr, "probe: breakdown buft=TOTAL model_mib=%.2f context_mib=%.2f compute_mib=%.2f\n",
                tot_model / MiB, tot_ctx / MiB, tot_comp / MiB);
    }

    int rc = 0;
    mtmd_context * mctx = nullptr;
    if (!mmproj.empty()) {
        // what llama-server does with --mmproj: mtmd_init_from_file on the loaded text model, the
        // projector on the first GPU unless --no-mmproj-offload, then a warmup encode (reserves
        // the image encoder's compute buffer); clip.cpp logs its buffers through this callback
        mtmd_log_set(log_cb, nullptr);
        mtmd_context_params mparams = mtmd_context_params_default();
        mparams.use_gpu = mmproj_gpu;
        mparams.n_threads = 4;
        mparams.warmup = true;
        const std::string & mfa = mmproj_fa.empty() ? fa : mmproj_fa;
        mparams.flash_attn_type = mfa == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                : mfa == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
        t = now_s();
        mctx = mtmd_init_from_file(mmproj.c_str(), model, mparams);
        fprintf(stderr, "probe: mmproj_loaded ok=%d use_gpu=%d fa=%s mm_s=%.2f\n",
                mctx != nullptr, (int) mmproj_gpu, mfa.c_str(), now_s() - t);
        if (!mctx) rc = 1;
        print_dev_mem("after_mmproj");
    }
    if (n_decode > 0) {
        const llama_vocab * vocab = llama_model_get_vocab(model);
        std::vector<llama_token> toks(n_decode, llama_vocab_bos(vocab));
        t = now_s();
        const int ret = llama_decode(ctx, llama_batch_get_one(toks.data(), (int32_t) toks.size()));
        llama_synchronize(ctx);
        fprintf(stderr, "probe: decode n_tokens=%d ret=%d decode_s=%.3f\n", n_decode, ret, now_s() - t);
        if (ret != 0) rc = 1;
        print_dev_mem("after_decode");
    }

    if (mctx) mtmd_free(mctx);
    llama_free(ctx);
    llama_model_free(model);
    fprintf(stderr, "probe: DONE rc=%d total_s=%.2f\n", rc, now_s() - t0);
    llama_backend_free();
    return rc;
}
