/* An RPC worker: serves this machine's CPU to corral processes that load a model with
 * corral_model_params.rpc_servers = "this-host:50052" (or rpc_servers=[...] in Python and
 * Node, --rpc in the CLI). The protocol has no authentication: private networks only.
 *
 *   cc rpc_server.c $(pkg-config --cflags --libs corral) -o corral-rpc-server
 *   ./corral-rpc-server [HOST] [PORT] [THREADS]      (default 127.0.0.1 50052, all cores)
 */
#include <corral.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    long port = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    long threads = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    if (port < 0 || port > 65535 || threads < 0) {
        fprintf(stderr, "usage: %s [HOST] [PORT] [THREADS]\n", argv[0]);
        return 2;
    }
    /* Returns only when it cannot listen. */
    corral_status status = corral_serve_rpc(host, (uint16_t)port, (uint32_t)threads);
    fprintf(stderr, "corral-rpc-server: %s (%s)\n", corral_last_error_message(), corral_status_name(status));
    return 1;
}
