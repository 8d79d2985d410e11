#include "dsi_signal.h"

#include <pthread.h>
#include <signal.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void ignore(void)
{
    signal(SIGPIPE, SIG_IGN);
}

void dsi_ignore_sigpipe(void)
{
    pthread_once(&once, ignore);
}
