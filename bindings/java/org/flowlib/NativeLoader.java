package org.flowlib;

import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/**
 * Loads libflowlib_jni.so, once, before the first native call. Looks, in order:
 * <ol>
 * <li>the file named by the system property {@code org.flowlib.jni} (or the
 *     environment variable {@code FLOWLIB_JNI}), and only there;</li>
 * <li>next to the jar (the build tree, or an application that ships both);</li>
 * <li>where {@code cmake --install} put it, relative to the installed jar
 *     (recorded in native.properties when the jar was built);</li>
 * <li>{@code java.library.path}, e.g. Debian's /usr/lib/&lt;arch&gt;/jni.</li>
 * </ol>
 * The JNI library is not extracted from the jar: it depends on libflowlib.so,
 * which it finds through its RUNPATH, and that only works where it is installed.
 */
final class NativeLoader {
    static final String NAME = "flowlib_jni";
    private static boolean loaded;

    private NativeLoader() {}

    static synchronized void load() {
        if (loaded) return;
        String explicit = System.getProperty("org.flowlib.jni", System.getenv("FLOWLIB_JNI"));
        if (explicit != null && !explicit.isEmpty()) {
            System.load(Paths.get(explicit).toAbsolutePath().toString());
            loaded = true;
            return;
        }
        List<Path> tried = new ArrayList<>();
        Path jarDir = jarDirectory();
        if (jarDir != null) {
            tried.add(jarDir.resolve(System.mapLibraryName(NAME)));
            String installed = installedRelativePath();
            if (installed != null) tried.add(jarDir.resolve(installed).normalize());
        }
        for (Path p : tried) {
            if (Files.isRegularFile(p)) {
                System.load(p.toAbsolutePath().toString());
                loaded = true;
                return;
            }
        }
        try {
            System.loadLibrary(NAME);
            loaded = true;
        } catch (UnsatisfiedLinkError e) {
            UnsatisfiedLinkError err = new UnsatisfiedLinkError(
                "flowlib: cannot load " + System.mapLibraryName(NAME) + " (looked at " + tried
                + " and java.library.path); set -Dorg.flowlib.jni=/path/to/"
                + System.mapLibraryName(NAME) + ": " + e.getMessage());
            err.initCause(e);
            throw err;
        }
    }

    private static Path jarDirectory() {
        try {
            var source = NativeLoader.class.getProtectionDomain().getCodeSource();
            if (source == null) return null;
            Path p = Paths.get(source.getLocation().toURI());
            return Files.isDirectory(p) ? p : p.getParent();
        } catch (URISyntaxException | SecurityException | IllegalArgumentException e) {
            return null;
        }
    }

    private static String installedRelativePath() {
        try (InputStream in = NativeLoader.class.getResourceAsStream("native.properties")) {
            if (in == null) return null;
            Properties props = new Properties();
            props.load(in);
            return props.getProperty("installed");
        } catch (IOException e) {
            return null;
        }
    }
}
