package ccf.testnode;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.ingest.common.IngestCommonPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single-node OpenSearch 2.19 for the ccf-agent test suite, built from Maven Central jars.
 *
 * <p>Usage: {@code CcfTestNode <home-dir> <http-port> [key=value ...]} (port 0 = any free port; the
 * optional pairs are extra node settings, e.g. {@code thread_pool.write.queue_size=1} to provoke 429s
 * in backpressure tests: such settings are static, so they must be given at start). Prints exactly one
 * line {@code CCF_NODE_READY http://127.0.0.1:PORT} on stdout once HTTP is up, then runs until
 * stdin reaches EOF or the JVM gets SIGTERM/SIGINT, and closes the node cleanly. Logs (WARN and up)
 * go to stderr; stdout carries only the ready line so the parent can parse it.
 *
 * <p>Constructing {@link Node} directly (instead of going through Bootstrap) skips the security
 * manager, jar-hell and production bootstrap checks, which a test node does not want.
 */
public final class CcfTestNode extends Node {

    /** The distribution ships these as modules; here they are plain classpath plugins. */
    private static final List<Class<? extends Plugin>> PLUGINS = List.of(
            Netty4Plugin.class,
            CommonAnalysisPlugin.class,
            MapperExtrasPlugin.class,
            IngestCommonPlugin.class,
            PainlessPlugin.class);

    private CcfTestNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
        // forbidPrivateIndexSettings=true, as in a real node.
        super(env, plugins, true);
    }

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: CcfTestNode <home-dir> <http-port> [key=value ...]");
            System.exit(2);
        }
        // LogConfigurator.configure replaces System.out/err with loggers (stdout at INFO, dropped at WARN),
        // so keep the real streams for the ready line and for fatal errors.
        PrintStream stdout = System.out;
        PrintStream stderr = System.err;
        try {
            run(args, stdout);
            System.exit(0);
        } catch (Throwable t) {
            // E.g. the port is taken. The node's non-daemon threads would keep the JVM alive: exit for real.
            t.printStackTrace(stderr);
            Throwable root = t;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            // Last line of the log, so the parent's log tail always shows the reason.
            stderr.println("CcfTestNode: start failed: " + root);
            stderr.flush();
            System.exit(1);
        }
    }

    private static void run(String[] args, PrintStream stdout) throws Exception {
        Path home = Paths.get(args[0]).toAbsolutePath();
        int httpPort = Integer.parseInt(args[1]);

        Path config = home.resolve("config");
        Path data = home.resolve("data");
        // A fresh data dir every start: tests must never see a previous run's indices. Unless the
        // node is restarted on purpose (-Dccf.keepData=true): a crash test wants its data back.
        if (!Boolean.getBoolean("ccf.keepData")) {
            deleteTree(data);
        }
        for (Path dir : List.of(config, data, home.resolve("logs"), home.resolve("plugins"), home.resolve("modules"))) {
            Files.createDirectories(dir);
        }
        // LogConfigurator only accepts a log4j2.properties from the config dir; ours sends WARN+ to stderr.
        Files.writeString(config.resolve("log4j2.properties"), String.join("\n",
                "status = error",
                "appender.console.type = Console",
                "appender.console.name = console",
                "appender.console.target = SYSTEM_ERR",
                "appender.console.layout.type = PatternLayout",
                "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n",
                "rootLogger.level = warn",
                "rootLogger.appenderRef.console.ref = console",
                // Warns on every start that a default setting is in force: noise for a test node.
                "logger.dangling.name = org.opensearch.gateway.DanglingIndicesState",
                "logger.dangling.level = error",
                ""), StandardCharsets.UTF_8);

        Settings.Builder builder = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", data.toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", "ccf-test")
                .put("node.name", "ccf-test-node")
                .put("discovery.type", "single-node")
                .put("network.host", "127.0.0.1")
                .put("http.port", httpPort)
                .put("transport.port", 0)
                // Else a nearly full disk turns indices read-only and bulks answer 429.
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("action.auto_create_index", true);
        for (String pair : Arrays.asList(args).subList(2, args.length)) {
            int eq = pair.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got: " + pair);
            }
            builder.put(pair.substring(0, eq), pair.substring(eq + 1));
        }
        Settings settings = builder.build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> "ccf-test-node");
        LogConfigurator.registerErrorListener();
        LogConfigurator.configure(env);

        CcfTestNode node = new CcfTestNode(env, PLUGINS);
        AtomicBoolean closed = new AtomicBoolean(false);
        Runnable shutdown = () -> {
            if (closed.compareAndSet(false, true)) {
                try {
                    node.close();
                    node.awaitClose(30, TimeUnit.SECONDS);
                } catch (Exception e) {
                    e.printStackTrace();
                }
            }
        };
        // SIGTERM/SIGINT run shutdown hooks; closing the node there flushes and releases the data dir lock.
        Runtime.getRuntime().addShutdownHook(new Thread(shutdown, "ccf-test-node-shutdown"));

        InetSocketAddress bound;
        try {
            node.start();
            bound = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress().address();
        } catch (Throwable t) {
            shutdown.run();
            throw t;
        }
        stdout.println("CCF_NODE_READY http://127.0.0.1:" + bound.getPort());
        stdout.flush();

        // The parent holds our stdin open; EOF means it stopped us or died, so we never outlive it.
        InputStream in = System.in;
        byte[] buf = new byte[256];
        while (in.read(buf) != -1) {
            // Input is ignored; we only wait for EOF.
        }
        shutdown.run();
    }

    private static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(root)) {
            for (Path p : (Iterable<Path>) walk.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(p);
            }
        }
    }
}
