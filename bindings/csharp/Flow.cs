using System;
using System.Text;

namespace FlowLib
{
    /// <summary>
    /// A flowlib call failed. The message is the library's own (flow_last_error);
    /// <see cref="Status"/> is the C status, and each status has a subclass.
    /// </summary>
    public class FlowException : Exception
    {
        public Status Status { get; }

        public FlowException(Status status, string message) : base(message) { Status = status; }

        /// <summary>The exception for a failed call, with this thread's error text.</summary>
        internal static FlowException For(Status status)
        {
            string message = FlowNative.FlowLastError();
            if (string.IsNullOrEmpty(message)) message = FlowNative.FlowStatusString(status);
            switch (status)
            {
                case Status.InvalidArgument: return new FlowInvalidArgumentException(message);
                case Status.Spec: return new FlowSpecException(message);
                case Status.IO: return new FlowIOException(message);
                case Status.Format: return new FlowFormatException(message);
                case Status.OutOfMemory: return new FlowOutOfMemoryException(message);
                case Status.DeviceError: return new FlowDeviceException(message);
                case Status.Unsupported: return new FlowUnsupportedException(message);
                case Status.Numeric: return new FlowNumericException(message);
                default: return new FlowException(status, message);
            }
        }
    }

    /// <summary>Bad argument: non-finite or out-of-support data, n = 0, an unknown device...</summary>
    public class FlowInvalidArgumentException : FlowException
    {
        public FlowInvalidArgumentException(string message) : base(Status.InvalidArgument, message) { }
    }

    /// <summary>The model or optimizer spec is wrong (the message names the field).</summary>
    public class FlowSpecException : FlowException
    {
        public FlowSpecException(string message) : base(Status.Spec, message) { }
    }

    /// <summary>A file could not be read or written.</summary>
    public class FlowIOException : FlowException
    {
        public FlowIOException(string message) : base(Status.IO, message) { }
    }

    /// <summary>A model file or buffer is malformed.</summary>
    public class FlowFormatException : FlowException
    {
        public FlowFormatException(string message) : base(Status.Format, message) { }
    }

    public class FlowOutOfMemoryException : FlowException
    {
        public FlowOutOfMemoryException(string message) : base(Status.OutOfMemory, message) { }
    }

    /// <summary>The device failed or is absent.</summary>
    public class FlowDeviceException : FlowException
    {
        public FlowDeviceException(string message) : base(Status.DeviceError, message) { }
    }

    /// <summary>A valid request this build cannot do.</summary>
    public class FlowUnsupportedException : FlowException
    {
        public FlowUnsupportedException(string message) : base(Status.Unsupported, message) { }
    }

    /// <summary>A result was not finite; a failed train step leaves the model unchanged.</summary>
    public class FlowNumericException : FlowException
    {
        public FlowNumericException(string message) : base(Status.Numeric, message) { }
    }

    /// <summary>
    /// A normalizing flow model.
    /// <code>
    /// using (var flow = new Flow("{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4}"))
    /// {
    ///     float[] x = Flow.ToyData("two_moons", 256, 0);   // [256, 2], row-major
    ///     for (int i = 0; i &lt; 500; i++) flow.TrainStep(x);
    ///     float[] logProb = flow.LogProb(x);
    /// }
    /// </code>
    /// Data are float32, row-major, batch first: n rows are a flat float[n * Dim]
    /// (pinned for the call, never copied) or, where an overload takes one, a
    /// float[n, Dim]. Wrong sizes throw ArgumentException; library failures a
    /// <see cref="FlowException"/> subclass. One thread at a time per Flow
    /// (<see cref="Clone(Device)"/> gives each thread its own).
    /// </summary>
    public sealed class Flow : IDisposable
    {
        private IntPtr handle;

        public int Dim { get; }
        public int ContextDim { get; }

        /// <summary>A model from a JSON spec (see README "Model specs").</summary>
        public Flow(string specJson, ulong seed = 0, Device device = Device.Cpu)
            : this(Create(NotNull(specJson, nameof(specJson)), seed, device))
        {
        }

        private static IntPtr Create(string specJson, ulong seed, Device device) =>
            Created(FlowNative.FlowModelCreate(out IntPtr p, specJson, device, seed), p);

        private Flow(IntPtr p)
        {
            handle = p;
            // Fixed for the model's life; read once so per-call checks stay cheap.
            Dim = (int)FlowNative.FlowModelDim(p);
            ContextDim = (int)FlowNative.FlowModelContextDim(p);
        }

        private static IntPtr Created(Status status, IntPtr p)
        {
            Check(status);
            return p;
        }

        /// <summary>Loads a model saved by <see cref="Save"/> (from any binding, or C).</summary>
        public static Flow Load(string path, Device device = Device.Cpu)
        {
            return new Flow(Created(FlowNative.FlowModelLoad(out IntPtr p, NotNull(path, nameof(path)), device), p));
        }

        /// <summary>Loads a model from the bytes <see cref="ToBytes"/> returned.</summary>
        public static Flow FromBytes(byte[] data, Device device = Device.Cpu)
        {
            NotNull(data, nameof(data));
            return new Flow(Created(FlowNative.FlowModelLoadBuffer(out IntPtr p, data, (ulong)data.Length, device), p));
        }

        /// <summary>An independent deep copy (weights, statistics, optimizer state).</summary>
        public Flow Clone(Device device)
        {
            var copy = new Flow(Created(FlowNative.FlowModelClone(out IntPtr p, Handle, device), p));
            GC.KeepAlive(this);
            return copy;
        }

        public Flow Clone() => Clone(Device);

        public void Dispose()
        {
            Free();
            GC.SuppressFinalize(this);
        }

        ~Flow() => Free();

        private void Free()
        {
            IntPtr p = handle;
            handle = IntPtr.Zero;
            if (p != IntPtr.Zero) FlowNative.FlowModelFree(p);
        }

        private IntPtr Handle
        {
            get
            {
                if (handle == IntPtr.Zero) throw new ObjectDisposedException(nameof(Flow));
                return handle;
            }
        }

        // Every method that passes Handle to C ends with GC.KeepAlive(this): without
        // it the finalizer may free the model while the native call still runs.

        public long ParamCount
        {
            get { long n = (long)FlowNative.FlowModelParamCount(Handle); GC.KeepAlive(this); return n; }
        }

        public Device Device
        {
            get { Device d = FlowNative.FlowModelDevice(Handle); GC.KeepAlive(this); return d; }
        }

        /// <summary>Successful train steps taken (saved with the model).</summary>
        public long StepCount
        {
            get { long n = (long)FlowNative.FlowModelStepCount(Handle); GC.KeepAlive(this); return n; }
        }

        /// <summary>The expanded, explicit spec (JSON); new Flow(flow.Spec) rebuilds the model.</summary>
        public string Spec
        {
            get
            {
                Status s = FlowNative.FlowModelSpec(Handle, null, 0, out ulong len);
                if (s != Status.BufferTooSmall) Check(s);
                var buf = new byte[len + 1];
                Check(FlowNative.FlowModelSpec(Handle, buf, (ulong)buf.Length, out len));
                GC.KeepAlive(this);
                return Encoding.UTF8.GetString(buf, 0, (int)len);
            }
        }

        /// <summary>A copy of all trainable parameters, in the model's fixed order.</summary>
        public float[] GetParams()
        {
            var p = new float[ParamCount];
            Check(FlowNative.FlowModelGetParams(Handle, p, (ulong)p.Length));
            GC.KeepAlive(this);
            return p;
        }

        public void SetParams(float[] values)
        {
            NotNull(values, nameof(values));
            if (values.Length != ParamCount)
                throw new ArgumentException($"params must have {ParamCount} values, got {values.Length}", nameof(values));
            Check(FlowNative.FlowModelSetParams(Handle, values, (ulong)values.Length));
            GC.KeepAlive(this);
        }

        // -- densities, sampling, transforms ---------------------------------

        /// <summary>log p(x_i | context_i) in nats for each row of x [n * Dim]; returns [n].</summary>
        public float[] LogProb(float[] x, float[] context = null)
        {
            int n = Rows(x, nameof(x));
            var result = new float[n];
            Check(FlowNative.FlowLogProb(Handle, x, Context(context, n), (ulong)n, result));
            GC.KeepAlive(this);
            return result;
        }

        public float[] LogProb(float[,] x, float[,] context = null) =>
            LogProb(Flatten(x, Dim, nameof(x)), context == null ? null : Flatten(context, ContextDim, nameof(context)));

        /// <summary>n samples [n * Dim]; the same seed gives the same samples.</summary>
        public float[] Sample(int n, ulong seed, float temperature = 1f, float[] context = null)
        {
            if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "n must be >= 1");
            var result = new float[checked(n * Dim)];
            Check(FlowNative.FlowSample(Handle, (ulong)n, Context(context, n), temperature, seed, result, null));
            GC.KeepAlive(this);
            return result;
        }

        /// <summary>z = forward(x) (data to latent); logDet[i] = log|det dz/dx| at row i.</summary>
        public float[] Forward(float[] x, out float[] logDet, float[] context = null)
        {
            int n = Rows(x, nameof(x));
            var z = new float[x.Length];
            logDet = new float[n];
            Check(FlowNative.FlowForward(Handle, x, Context(context, n), (ulong)n, z, logDet));
            GC.KeepAlive(this);
            return z;
        }

        /// <summary>x = inverse(z) (latent to data); logDet[i] = log|det dx/dz| at row i.</summary>
        public float[] Inverse(float[] z, out float[] logDet, float[] context = null)
        {
            int n = Rows(z, nameof(z));
            var x = new float[z.Length];
            logDet = new float[n];
            Check(FlowNative.FlowInverse(Handle, z, Context(context, n), (ulong)n, x, logDet));
            GC.KeepAlive(this);
            return x;
        }

        // -- training ----------------------------------------------------------

        /// <summary>Chooses the optimizer (JSON, e.g. {"type":"adam","lr":1e-3}) and resets its state.</summary>
        public void SetOptimizer(string optimizerJson)
        {
            Check(FlowNative.FlowModelSetOptimizer(Handle, NotNull(optimizerJson, nameof(optimizerJson))));
            GC.KeepAlive(this);
        }

        /// <summary>One optimizer step on the batch's mean negative log-likelihood; returns it (nats).</summary>
        public float TrainStep(float[] x, float[] context = null)
        {
            int n = Rows(x, nameof(x));
            var loss = new float[1];
            Check(FlowNative.FlowTrainStep(Handle, x, Context(context, n), (ulong)n, loss));
            GC.KeepAlive(this);
            return loss[0];
        }

        public float TrainStep(float[,] x) => TrainStep(Flatten(x, Dim, nameof(x)));

        /// <summary>The loss and its gradients (parameters, x), without changing the model.</summary>
        public float LossGrad(float[] x, out float[] paramGrad, out float[] xGrad, float[] context = null)
        {
            int n = Rows(x, nameof(x));
            var loss = new float[1];
            paramGrad = new float[ParamCount];
            xGrad = new float[x.Length];
            Check(FlowNative.FlowLossGrad(Handle, x, Context(context, n), (ulong)n, loss, paramGrad, xGrad));
            GC.KeepAlive(this);
            return loss[0];
        }

        // -- saving ------------------------------------------------------------

        /// <summary>Saves weights, statistics, spec and optimizer state (safetensors).</summary>
        public void Save(string path)
        {
            Check(FlowNative.FlowModelSave(Handle, NotNull(path, nameof(path))));
            GC.KeepAlive(this);
        }

        /// <summary>The bytes <see cref="Save"/> would write.</summary>
        public byte[] ToBytes()
        {
            Status s = FlowNative.FlowModelSaveBuffer(Handle, null, 0, out ulong len);
            if (s != Status.BufferTooSmall) Check(s);
            var buf = new byte[len];
            Check(FlowNative.FlowModelSaveBuffer(Handle, buf, (ulong)buf.Length, out len));
            GC.KeepAlive(this);
            return buf;
        }

        public override string ToString() =>
            handle == IntPtr.Zero ? "Flow(disposed)"
                : $"Flow(Dim={Dim}, ContextDim={ContextDim}, ParamCount={ParamCount}, Device={Device})";

        // -- library-wide --------------------------------------------------------

        /// <summary>Version of the loaded libflowlib, e.g. "0.1.0".</summary>
        public static string Version => FlowNative.FlowVersionString();

        public static bool DeviceAvailable(Device device) => FlowNative.FlowDeviceAvailable(device) != 0;

        /// <summary>Threads the CPU backend uses, for every model; 0 = all cores.</summary>
        public static void SetNumThreads(int n) => Check(FlowNative.FlowSetNumThreads(n));

        /// <summary>n rows [n * 2] of a 2-D toy data set ("two_moons", "eight_gaussians", ...).</summary>
        public static float[] ToyData(string name, int n, ulong seed)
        {
            if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "n must be >= 1");
            var result = new float[checked(n * 2)];
            Check(FlowNative.FlowToyData(NotNull(name, nameof(name)), (ulong)n, seed, result));
            return result;
        }

        /// <summary>A flat row-major array as [rows, width].</summary>
        public static float[,] ToRows(float[] flat, int width)
        {
            if (width < 1 || flat.Length % width != 0)
                throw new ArgumentException($"{flat.Length} values are not rows of {width}", nameof(flat));
            var rows = new float[flat.Length / width, width];
            Buffer.BlockCopy(flat, 0, rows, 0, flat.Length * sizeof(float));
            return rows;
        }

        // -- helpers ---------------------------------------------------------------

        private static void Check(Status s)
        {
            if (s != Status.Ok) throw FlowException.For(s);
        }

        private static T NotNull<T>(T value, string name) where T : class =>
            value ?? throw new ArgumentNullException(name);

        /// <summary>Rows in a flat [n * Dim] batch; the library reads exactly that many floats.</summary>
        private int Rows(float[] a, string name)
        {
            NotNull(a, name);
            if (a.Length == 0 || a.Length % Dim != 0)
                throw new ArgumentException($"{name} must hold n * {Dim} floats (n rows of {Dim}, n >= 1), got {a.Length}", name);
            return a.Length / Dim;
        }

        private float[] Context(float[] context, int n)
        {
            if (context == null) return null;
            if (ContextDim == 0) throw new ArgumentException("this model takes no context (ContextDim is 0)", nameof(context));
            if (context.Length != (long)n * ContextDim)
                throw new ArgumentException($"context must hold {n} * {ContextDim} floats, got {context.Length}", nameof(context));
            return context;
        }

        private static float[] Flatten(float[,] rows, int width, string name)
        {
            NotNull(rows, name);
            if (rows.GetLength(1) != width || rows.GetLength(0) == 0)
                throw new ArgumentException($"{name} must have shape [n, {width}] with n >= 1, got [{rows.GetLength(0)}, {rows.GetLength(1)}]", name);
            // A float[,] is one row-major block: a single block copy.
            var flat = new float[rows.Length];
            Buffer.BlockCopy(rows, 0, flat, 0, rows.Length * sizeof(float));
            return flat;
        }
    }
}
