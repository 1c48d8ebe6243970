package ccf.testbroker;

import java.io.IOException;

/**
 * Runs {@code kafka.Kafka} (a KRaft broker and controller in one JVM) for the ccf-agent test suite,
 * and exits cleanly when its stdin reaches EOF.
 *
 * <p>The parent holds the stdin pipe, so a broker never outlives the Python process that started it,
 * even after that process is killed with SIGKILL. {@link System#exit} runs Kafka's own shutdown hook:
 * the same clean stop as a SIGTERM. That stop waits for the controller, so a broker whose controller
 * is already gone would wait forever: past {@link #EXIT_GRACE_MS} the JVM halts. Arguments are passed
 * to {@code kafka.Kafka} unchanged.
 */
public final class CcfTestBroker {

    static final long EXIT_GRACE_MS = 15_000;

    private CcfTestBroker() {}

    public static void main(String[] args) throws Exception {
        Thread watcher = new Thread(CcfTestBroker::exitOnStdinEof, "ccf-stdin-watcher");
        watcher.setDaemon(true);
        watcher.start();
        kafka.Kafka.main(args);
    }

    private static void exitOnStdinEof() {
        try {
            while (System.in.read() != -1) {
                // nothing is ever written; only EOF matters
            }
        } catch (IOException e) {
            // a broken pipe means the parent is gone too
        }
        Thread halter = new Thread(() -> {
            try {
                Thread.sleep(EXIT_GRACE_MS);
            } catch (InterruptedException e) {
                // halt now
            }
            Runtime.getRuntime().halt(1);
        }, "ccf-exit-halter");
        halter.setDaemon(true);
        halter.start();
        System.exit(0);
    }
}
