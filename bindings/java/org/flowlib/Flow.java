package org.flowlib;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;

/**
 * A normalizing flow model.
 *
 * <pre>{@code
 * try (Flow flow = new Flow("{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[32,32]}")) {
 *     float[] x = Flow.toyData("two_moons", 256, 0);      // [256, 2], row-major
 *     for (int step = 0; step < 500; step++) flow.trainStep(x);
 *     float[] logProb = flow.logProb(x);                  // [256]
 *     float[][] samples = Flow.toRows(flow.sample(100, 7), flow.dim());
 * }
 * }</pre>
 *
 * Data are float32, row-major, batch first: a batch of n rows is a flat
 * {@code float[n * dim]}, or a {@code float[n][dim]} where an overload takes
 * one. Wrong sizes throw {@link IllegalArgumentException}; failures of the
 * library throw a {@link FlowException} subclass with its message. A Flow is
 * used by one thread at a time ({@link #copy()} gives each thread its own).
 * Close it (try-with-resources) to free it at a known time; one that is only
 * dropped is freed when collected.
 */
public final class Flow implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** The native handle, apart from the Flow so the Cleaner can free it. */
    private static final class Handle implements Runnable {
        private volatile long ptr;

        Handle(long ptr) {
            this.ptr = ptr;
        }

        @Override
        public void run() {
            long p = ptr;
            ptr = 0;
            if (p != 0) FlowNative.flowModelFree(p);
        }
    }

    /** The result of {@link #forward} or {@link #inverse}: values [n, dim] and log|det| [n]. */
    public record Transformed(float[] values, float[] logDet) {}

    /** The result of {@link #lossGrad}. */
    public record LossGrad(float loss, float[] paramGrad, float[] xGrad) {}

    private final Handle handle;
    private final Cleaner.Cleanable cleanable;
    private final int dim;
    private final int contextDim;

    /** A model from a JSON spec (see README "Model specs"), on the CPU, seed 0. */
    public Flow(String specJson) throws FlowException {
        this(specJson, 0L, Device.CPU);
    }

    public Flow(String specJson, long seed) throws FlowException {
        this(specJson, seed, Device.CPU);
    }

    /** seed fixes the initial weights and any random masks or permutations. */
    public Flow(String specJson, long seed, Device device) throws FlowException {
        this(created(out -> FlowNative.flowModelCreate(out, requireNonNull(specJson, "specJson"), device, seed)));
    }

    private Flow(long ptr) {
        handle = new Handle(ptr);
        cleanable = CLEANER.register(this, handle);
        // Fixed for the model's life; read once so per-call checks stay cheap.
        dim = (int) FlowNative.flowModelDim(ptr);
        contextDim = (int) FlowNative.flowModelContextDim(ptr);
    }

    private interface Creator {
        Status create(long[] out);
    }

    private static long created(Creator creator) throws FlowException {
        long[] out = new long[1];
        check(creator.create(out));
        return out[0];
    }

    /** Loads a model saved by {@link #save} (from any binding, or C). */
    public static Flow load(String path) throws FlowException {
        return load(path, Device.CPU);
    }

    public static Flow load(String path, Device device) throws FlowException {
        return new Flow(created(out -> FlowNative.flowModelLoad(out, requireNonNull(path, "path"), device)));
    }

    /** Loads a model from the bytes {@link #toBytes} returned. */
    public static Flow fromBytes(byte[] data) throws FlowException {
        return fromBytes(data, Device.CPU);
    }

    public static Flow fromBytes(byte[] data, Device device) throws FlowException {
        requireNonNull(data, "data");
        return new Flow(created(out -> FlowNative.flowModelLoadBuffer(out, data, data.length, device)));
    }

    /** An independent deep copy (weights, statistics, optimizer state). */
    public Flow copy() throws FlowException {
        return copy(device());
    }

    public Flow copy(Device device) throws FlowException {
        try {
            long p = ptr();
            return new Flow(created(out -> FlowNative.flowModelClone(out, p, device)));
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Frees the model; idempotent. Later calls throw IllegalStateException. */
    @Override
    public void close() {
        cleanable.clean();
    }

    // -- properties ---------------------------------------------------------

    public int dim() {
        return dim;
    }

    public int contextDim() {
        return contextDim;
    }

    public long paramCount() {
        try {
            return FlowNative.flowModelParamCount(ptr());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    public Device device() {
        try {
            return FlowNative.flowModelDevice(ptr());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Successful train steps taken (saved with the model). */
    public long stepCount() {
        try {
            return FlowNative.flowModelStepCount(ptr());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The expanded, explicit spec (JSON): {@code new Flow(flow.spec())} rebuilds the model. */
    public String spec() throws FlowException {
        try {
            long[] len = new long[1];
            Status s = FlowNative.flowModelSpec(ptr(), null, 0, len);
            if (s != Status.BUFFER_TOO_SMALL) check(s);
            byte[] buf = new byte[Math.toIntExact(len[0] + 1)];
            check(FlowNative.flowModelSpec(ptr(), buf, buf.length, len));
            return new String(buf, 0, (int) len[0], StandardCharsets.UTF_8);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** A copy of all trainable parameters, in the model's fixed order. */
    public float[] getParams() throws FlowException {
        try {
            float[] out = new float[Math.toIntExact(paramCount())];
            check(FlowNative.flowModelGetParams(ptr(), out, out.length));
            return out;
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    public void setParams(float[] params) throws FlowException {
        try {
            long count = paramCount();
            if (requireNonNull(params, "params").length != count)
                throw new IllegalArgumentException("params must have " + count + " values, got " + params.length);
            check(FlowNative.flowModelSetParams(ptr(), params, params.length));
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    // -- densities, sampling, transforms --------------------------------------

    /** log p(x_i) in nats for each row of x [n * dim]; returns [n]. */
    public float[] logProb(float[] x) throws FlowException {
        return logProb(x, null);
    }

    /** log p(x_i | context_i); context is [n * contextDim] (null for none). */
    public float[] logProb(float[] x, float[] context) throws FlowException {
        try {
            int n = rows(x, "x");
            float[] out = new float[n];
            check(FlowNative.flowLogProb(ptr(), x, context(context, n), n, out));
            return out;
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    public float[] logProb(float[][] x) throws FlowException {
        return logProb(flatten(x, dim, "x"), null);
    }

    public float[] logProb(float[][] x, float[][] context) throws FlowException {
        return logProb(flatten(x, dim, "x"), context == null ? null : flatten(context, contextDim, "context"));
    }

    /** n samples [n * dim]; the same seed gives the same samples. */
    public float[] sample(int n, long seed) throws FlowException {
        return sample(n, seed, 1.0f, null);
    }

    /** temperature (> 0) scales the base distribution; context is [n * contextDim] or null. */
    public float[] sample(int n, long seed, float temperature, float[] context) throws FlowException {
        try {
            if (n < 1) throw new IllegalArgumentException("n must be >= 1, got " + n);
            float[] out = new float[Math.multiplyExact(n, dim)];
            check(FlowNative.flowSample(ptr(), n, context(context, n), temperature, seed, out, null));
            return out;
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** z = forward(x) (data to latent) and log|det dz/dx| per row. */
    public Transformed forward(float[] x) throws FlowException {
        return forward(x, null);
    }

    public Transformed forward(float[] x, float[] context) throws FlowException {
        return transform(true, x, context);
    }

    public Transformed forward(float[][] x) throws FlowException {
        return forward(flatten(x, dim, "x"), null);
    }

    /** x = inverse(z) (latent to data) and log|det dx/dz| per row. */
    public Transformed inverse(float[] z) throws FlowException {
        return inverse(z, null);
    }

    public Transformed inverse(float[] z, float[] context) throws FlowException {
        return transform(false, z, context);
    }

    public Transformed inverse(float[][] z) throws FlowException {
        return inverse(flatten(z, dim, "z"), null);
    }

    private Transformed transform(boolean forward, float[] in, float[] context) throws FlowException {
        try {
            int n = rows(in, forward ? "x" : "z");
            float[] out = new float[in.length];
            float[] logDet = new float[n];
            float[] ctx = context(context, n);
            check(forward ? FlowNative.flowForward(ptr(), in, ctx, n, out, logDet)
                          : FlowNative.flowInverse(ptr(), in, ctx, n, out, logDet));
            return new Transformed(out, logDet);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    // -- training -------------------------------------------------------------

    /** Chooses the optimizer (JSON, e.g. {@code {"type":"adam","lr":1e-3}}) and resets its state. */
    public void setOptimizer(String optimizerJson) throws FlowException {
        try {
            check(FlowNative.flowModelSetOptimizer(ptr(), requireNonNull(optimizerJson, "optimizerJson")));
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** One optimizer step on the batch's mean negative log-likelihood; returns it (nats). */
    public float trainStep(float[] x) throws FlowException {
        return trainStep(x, null);
    }

    public float trainStep(float[] x, float[] context) throws FlowException {
        try {
            int n = rows(x, "x");
            float[] loss = new float[1];
            check(FlowNative.flowTrainStep(ptr(), x, context(context, n), n, loss));
            return loss[0];
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    public float trainStep(float[][] x) throws FlowException {
        return trainStep(flatten(x, dim, "x"), null);
    }

    /** The loss and its gradients (parameters, x), without changing the model. */
    public LossGrad lossGrad(float[] x, float[] context) throws FlowException {
        try {
            int n = rows(x, "x");
            float[] loss = new float[1];
            float[] paramGrad = new float[Math.toIntExact(paramCount())];
            float[] xGrad = new float[x.length];
            check(FlowNative.flowLossGrad(ptr(), x, context(context, n), n, loss, paramGrad, xGrad));
            return new LossGrad(loss[0], paramGrad, xGrad);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    // -- saving ---------------------------------------------------------------

    /** Saves weights, statistics, spec and optimizer state (safetensors). */
    public void save(String path) throws FlowException {
        try {
            check(FlowNative.flowModelSave(ptr(), requireNonNull(path, "path")));
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The bytes {@link #save} would write. */
    public byte[] toBytes() throws FlowException {
        try {
            long[] len = new long[1];
            Status s = FlowNative.flowModelSaveBuffer(ptr(), null, 0, len);
            if (s != Status.BUFFER_TOO_SMALL) check(s);
            byte[] buf = new byte[Math.toIntExact(len[0])];
            check(FlowNative.flowModelSaveBuffer(ptr(), buf, buf.length, len));
            return buf;
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    @Override
    public String toString() {
        long p = handle.ptr;
        return p == 0 ? "Flow(closed)" : "Flow(dim=" + dim + ", contextDim=" + contextDim
            + ", params=" + paramCount() + ", device=" + device() + ")";
    }

    // -- library-wide -----------------------------------------------------------

    /** Version of the loaded libflowlib, e.g. "0.1.0". */
    public static String version() {
        return FlowNative.flowVersionString();
    }

    public static boolean deviceAvailable(Device device) {
        return FlowNative.flowDeviceAvailable(device) != 0;
    }

    /** Threads the CPU backend uses, for every model; 0 = all cores. */
    public static void setNumThreads(int n) throws FlowException {
        check(FlowNative.flowSetNumThreads(n));
    }

    /** n rows [n * 2] of a 2-D toy data set ("two_moons", "eight_gaussians", ...). */
    public static float[] toyData(String name, int n, long seed) throws FlowException {
        if (n < 1) throw new IllegalArgumentException("n must be >= 1, got " + n);
        float[] out = new float[Math.multiplyExact(n, 2)];
        check(FlowNative.flowToyData(requireNonNull(name, "name"), n, seed, out));
        return out;
    }

    /** Rows of a flat row-major array: toRows(x, 2)[i][j] == x[i * 2 + j]. */
    public static float[][] toRows(float[] flat, int width) {
        if (width < 1 || flat.length % width != 0)
            throw new IllegalArgumentException(flat.length + " values are not rows of " + width);
        float[][] rows = new float[flat.length / width][];
        for (int i = 0; i < rows.length; i++)
            rows[i] = java.util.Arrays.copyOfRange(flat, i * width, (i + 1) * width);
        return rows;
    }

    // -- helpers ----------------------------------------------------------------

    private long ptr() {
        long p = handle.ptr;
        if (p == 0) throw new IllegalStateException("this Flow is closed");
        return p;
    }

    static void check(Status s) throws FlowException {
        if (s != Status.OK) throw FlowException.of(s);
    }

    private static <T> T requireNonNull(T value, String name) {
        if (value == null) throw new IllegalArgumentException(name + " must not be null");
        return value;
    }

    /** Rows in a flat [n * dim] batch; the library reads exactly that many floats. */
    private int rows(float[] a, String name) {
        requireNonNull(a, name);
        if (a.length == 0 || a.length % dim != 0)
            throw new IllegalArgumentException(name + " must hold n * " + dim + " floats (n rows of "
                + dim + ", n >= 1), got " + a.length);
        return a.length / dim;
    }

    private float[] context(float[] context, int n) {
        if (context == null) return null;
        if (contextDim == 0) throw new IllegalArgumentException("this model takes no context (contextDim is 0)");
        if (context.length != (long) n * contextDim)
            throw new IllegalArgumentException("context must hold " + n + " * " + contextDim
                + " floats, got " + context.length);
        return context;
    }

    private static float[] flatten(float[][] rows, int width, String name) {
        requireNonNull(rows, name);
        float[] flat = new float[Math.multiplyExact(rows.length, width)];
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] == null || rows[i].length != width)
                throw new IllegalArgumentException(name + " must be rows of " + width + " floats; row " + i
                    + " has " + (rows[i] == null ? "none" : String.valueOf(rows[i].length)));
            System.arraycopy(rows[i], 0, flat, i * width, width);
        }
        return flat;
    }
}
