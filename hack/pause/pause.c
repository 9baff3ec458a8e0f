/* pause: the pod sandbox process of the ghcr.io/stampede-dev/pause image.
 *
 * It holds the pod's namespaces open and does nothing else: it sleeps until SIGTERM or
 * SIGINT arrives and then exits 0, and, as PID 1 of a pod sharing its PID namespace, it
 * reaps every child that exits (SIGCHLD) so no zombies pile up. `pause -v` prints the
 * version. Built by scripts/images with `gcc -static -Os`.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "dev"
#endif

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static int handle(int sig, void (*fn)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = (sig == SIGCHLD) ? SA_NOCLDSTOP | SA_RESTART : SA_RESTART;
    return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("pause %s\n", VERSION);
        return 0;
    }
    if (getpid() != 1)
        fprintf(stderr, "pause: warning: not running as PID 1\n");
    if (handle(SIGINT, on_stop) < 0 || handle(SIGTERM, on_stop) < 0 ||
        handle(SIGCHLD, on_child) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;)
        pause();
    return 42; /* unreachable */
}
