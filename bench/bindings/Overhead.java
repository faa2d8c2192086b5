// Per-call cost of log_prob on 1 row through the Java binding: the Flow class
// (checks, a new result array, exceptions) and the raw SWIG layer (FlowNative).
// Usage: java -cp flowlib.jar Overhead.java SPEC CALLS ROUNDS; prints JSON lines.
import java.util.Arrays;

import org.flowlib.Flow;
import org.flowlib.FlowNative;
import org.flowlib.Device;

public class Overhead {
    interface Call {
        void run() throws Exception;
    }

    static double measure(Call fn, int calls, int rounds) throws Exception {
        for (int w = 0; w < 5; w++)  // JIT warm-up
            for (int i = 0; i < calls; i++) fn.run();
        double[] t = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            long start = System.nanoTime();
            for (int i = 0; i < calls; i++) fn.run();
            t[r] = (System.nanoTime() - start) / (double) calls;
        }
        Arrays.sort(t);
        return t[rounds / 2];
    }

    static void print(String layer, String call, double ns) {
        System.out.printf(java.util.Locale.ROOT,
            "{\"lang\": \"Java\", \"layer\": \"%s\", \"call\": \"%s\", \"ns\": %.1f}%n", layer, call, ns);
    }

    public static void main(String[] args) throws Exception {
        String spec = args[0];
        int calls = Integer.parseInt(args[1]), rounds = Integer.parseInt(args[2]);
        float[] x = {0.5f, -0.25f};
        float[] out = new float[1];
        long[] m = new long[1];
        FlowNative.flowModelCreate(m, spec, Device.CPU, 1);
        try (Flow flow = new Flow(spec, 1)) {
            print("Flow", "log_prob 1 row", measure(() -> flow.logProb(x), calls, rounds));
            print("raw SWIG", "log_prob 1 row", measure(() -> FlowNative.flowLogProb(m[0], x, null, 1, out), calls, rounds));
            print("raw SWIG", "model_dim", measure(() -> FlowNative.flowModelDim(m[0]), calls, rounds));
        } finally {
            FlowNative.flowModelFree(m[0]);
        }
    }
}
