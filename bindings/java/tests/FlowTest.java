// Tests of the Java binding (ctest: bindings_java, bindings_java_cross).
//   java -cp flowlib.jar:test-classes FlowTest DIR           all tests
//   java -cp flowlib.jar:test-classes FlowTest --cross DIR   load every model in DIR
// DIR is the scratch folder shared with the C reference program and the
// other bindings. A plain main (no JUnit: nothing outside Debian's JDK).
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.flowlib.Device;
import org.flowlib.Flow;
import org.flowlib.FlowException;
import org.flowlib.FlowFormatException;
import org.flowlib.FlowIOException;
import org.flowlib.FlowInvalidArgumentException;
import org.flowlib.FlowNative;
import org.flowlib.FlowNumericException;
import org.flowlib.FlowSpecException;
import org.flowlib.Status;

public final class FlowTest {
    static final String SPEC = "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[16,16]}";

    interface Body {
        void run() throws Exception;
    }

    static int failures = 0;

    static void test(String name, Body body) {
        try {
            body.run();
            System.out.println("ok   " + name);
        } catch (Throwable t) {
            failures++;
            System.out.println("FAIL " + name + ": " + t);
            t.printStackTrace(System.out);
        }
    }

    static void check(boolean condition, String what) {
        if (!condition) throw new AssertionError(what);
    }

    static <T extends Throwable> T expect(Class<T> type, Body body) throws Exception {
        try {
            body.run();
        } catch (Throwable t) {
            if (type.isInstance(t)) return type.cast(t);
            throw new AssertionError("expected " + type.getSimpleName() + ", got " + t, t);
        }
        throw new AssertionError("expected " + type.getSimpleName() + ", nothing thrown");
    }

    static float[] readFloats(Path p) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
        float[] v = new float[b.remaining() / 4];
        b.asFloatBuffer().get(v);
        return v;
    }

    static void writeFloats(Path p, float[] v) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(v);
        Files.write(p, b.array());
    }

    static boolean sameBits(float[] a, float[] b) {
        if (a.length != b.length) return false;
        for (int i = 0; i < a.length; i++)
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) return false;
        return true;
    }

    static long rssBytes() throws IOException {
        String[] statm = Files.readString(Paths.get("/proc/self/statm")).trim().split(" ");
        return Long.parseLong(statm[1]) * 4096L;
    }

    public static void main(String[] args) throws Exception {
        boolean cross = args.length == 2 && args[0].equals("--cross");
        Path dir = Paths.get(args[args.length - 1]);
        if (cross) {
            test("models from every language", () -> crossCheck(dir));
        } else {
            allTests(dir);
        }
        System.out.println(failures == 0 ? "all passed" : failures + " failed");
        System.exit(failures == 0 ? 0 : 1);
    }

    static void crossCheck(Path dir) throws Exception {
        float[] data = readFloats(dir.resolve("data.f32"));
        List<String> langs = new ArrayList<>();
        try (DirectoryStream<Path> models = Files.newDirectoryStream(dir, "model_*.safetensors")) {
            for (Path model : models) {
                String name = model.getFileName().toString();
                String lang = name.substring("model_".length(), name.length() - ".safetensors".length());
                float[] want = readFloats(dir.resolve("logprob_" + lang + ".f32"));
                try (Flow f = Flow.load(model.toString())) {
                    check(sameBits(f.logProb(data), want), "log_prob of the model saved by " + lang);
                }
                langs.add(lang);
            }
        }
        check(langs.contains("c") && langs.size() >= 2, "only " + langs + " found");
    }

    static void allTests(Path dir) throws Exception {
        test("version and raw layer", () -> {
            check(Flow.version().equals(FlowNative.flowVersionString()), "version");
            check(Flow.deviceAvailable(Device.CPU), "cpu available");
            check(FlowNative.flowStatusString(Status.SPEC).equals("FLOW_ERR_SPEC"), "status string");
            Flow.setNumThreads(1);
        });

        test("train a few steps", () -> {
            try (Flow f = new Flow(SPEC, 3)) {
                float[] x = Flow.toyData("two_moons", 128, 0);
                for (int i = 0; i < 5; i++) check(Float.isFinite(f.trainStep(x)), "finite loss");
                check(f.stepCount() == 5, "step count");
                check(f.dim() == 2 && f.contextDim() == 0 && f.paramCount() > 0, "properties");
                float[] lp = f.logProb(x);
                check(lp.length == 128 && Float.isFinite(lp[0]), "log_prob");
                float[][] rows = Flow.toRows(x, 2);
                check(sameBits(f.logProb(rows), lp), "2-D overload");
                Flow.Transformed z = f.forward(x);
                Flow.Transformed back = f.inverse(z.values());
                for (int i = 0; i < x.length; i++) check(Math.abs(back.values()[i] - x[i]) < 1e-4, "round trip");
                Flow.LossGrad g = f.lossGrad(x, null);
                check(g.paramGrad().length == f.paramCount() && Float.isFinite(g.loss()), "loss grad");
                check(f.spec().contains("affine_coupling"), "spec");
            }
        });

        test("reference model bit for bit", () -> {
            float[] data = readFloats(dir.resolve("data.f32"));
            try (Flow f = Flow.load(dir.resolve("model_c.safetensors").toString())) {
                check(sameBits(f.logProb(data), readFloats(dir.resolve("logprob_c.f32"))), "log_prob differs from C");
            }
        });

        test("sample with a seed twice", () -> {
            try (Flow f = new Flow(SPEC, 3)) {
                f.trainStep(Flow.toyData("two_moons", 128, 0));
                float[] a = f.sample(100, 42), b = f.sample(100, 42);
                check(a.length == 200 && sameBits(a, b), "same seed, same samples");
                check(!sameBits(a, f.sample(100, 43)), "other seed, other samples");
            }
        });

        test("save, load, bytes, copy", () -> {
            Path p = Files.createTempFile("flowlib", ".safetensors");
            try (Flow f = new Flow(SPEC, 5)) {
                float[] x = Flow.toyData("two_moons", 64, 1);
                f.trainStep(x);
                f.save(p.toString());
                try (Flow g = Flow.load(p.toString()); Flow h = Flow.fromBytes(f.toBytes()); Flow c = f.copy()) {
                    check(sameBits(f.logProb(x), g.logProb(x)), "file");
                    check(sameBits(f.logProb(x), h.logProb(x)), "bytes");
                    check(sameBits(f.logProb(x), c.logProb(x)), "copy");
                }
                float[] w = f.getParams();
                f.setParams(w);
                check(sameBits(w, f.getParams()), "params");
            } finally {
                Files.deleteIfExists(p);
            }
        });

        test("leave a model for the other languages", () -> {
            float[] data = readFloats(dir.resolve("data.f32"));
            try (Flow f = new Flow(SPEC.replace("}", ",\"batch_norm\":true}"), 12)) {
                for (int step = 0; step < 10; step++) f.trainStep(Flow.toyData("two_moons", 128, step));
                f.save(dir.resolve("model_java.safetensors").toString());
                writeFloats(dir.resolve("logprob_java.f32"), f.logProb(data));
            }
        });

        test("errors", () -> {
            FlowSpecException e = expect(FlowSpecException.class, () -> new Flow("{\"preset\":\"realnvp\",\"dim\":2,\"bogus\":1}"));
            check(e.getMessage().contains("bogus") && e.status() == Status.SPEC, "spec message: " + e.getMessage());
            expect(FlowSpecException.class, () -> new Flow("{not json"));
            try (Flow f = new Flow(SPEC)) {
                expect(IllegalArgumentException.class, () -> f.logProb(new float[3]));
                expect(IllegalArgumentException.class, () -> f.logProb(new float[0]));
                expect(IllegalArgumentException.class, () -> f.logProb(new float[][] {{1, 2}, {3}}));
                expect(IllegalArgumentException.class, () -> f.logProb(new float[4], new float[2]));
                float[] x = Flow.toyData("two_moons", 4, 0);
                x[3] = Float.NaN;
                FlowInvalidArgumentException nan = expect(FlowInvalidArgumentException.class, () -> f.logProb(x));
                check(!nan.getMessage().isEmpty(), "NaN message");
                expect(FlowIOException.class, () -> Flow.load(dir.resolve("missing.safetensors").toString()));
                byte[] good = f.toBytes();
                Path corrupt = dir.resolve("corrupt_java.safetensors.bin");
                Files.write(corrupt, Arrays.copyOf(good, good.length / 2));
                expect(FlowFormatException.class, () -> Flow.load(corrupt.toString()));
                expect(FlowFormatException.class, () -> Flow.fromBytes(Arrays.copyOf(good, 40)));
                float[] w = f.getParams();
                for (int i = 0; i < w.length; i++) w[i] = i % 3 == 0 ? 1e30f : -1e30f;
                f.setParams(w);
                expect(FlowNumericException.class, () -> f.trainStep(Flow.toyData("two_moons", 4, 0)));
                check(f.stepCount() == 0, "failed step leaves the model unchanged");
                expect(FlowException.class, () -> Flow.toyData("no_such_set", 4, 0));
                f.close();
                f.close();
                expect(IllegalStateException.class, () -> f.logProb(new float[2]));
            }
        });

        test("no leak over 10,000 create/free cycles", () -> {
            String spec = "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[64,64]}";
            float[] x = Flow.toyData("two_moons", 4, 0);
            Body cycles = () -> {
                for (int i = 0; i < 1000; i++) {
                    try (Flow f = new Flow(spec, i)) {
                        f.logProb(x);
                    }
                }
            };
            cycles.run(); // warm-up: JIT, allocator pools
            long before = rssBytes();
            for (int k = 0; k < 10; k++) cycles.run();
            long grown = rssBytes() - before;
            // one leaked model of this size is ~70 kB: a leak would be ~700 MB
            check(grown < (32L << 20), "RSS grew by " + (grown >> 20) + " MB");
        });

        test("dropped flows are freed by the Cleaner", () -> {
            for (int i = 0; i < 2000; i++) new Flow(SPEC, i);
            System.gc();
        });
    }
}
