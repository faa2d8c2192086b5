package org.flowlib;

/**
 * A flowlib call failed. The message is the library's own (flow_last_error);
 * {@link #status()} is the C status. Each status has its own subclass, so
 * callers catch exactly what they can handle.
 */
public class FlowException extends Exception {
    private static final long serialVersionUID = 1L;
    private final Status status;

    public FlowException(Status status, String message) {
        super(message);
        this.status = status;
    }

    public Status status() {
        return status;
    }

    /** The exception for a failed call's status, with this thread's error text. */
    static FlowException of(Status status) {
        String message = FlowNative.flowLastError();
        if (message.isEmpty()) message = FlowNative.flowStatusString(status);
        switch (status) {
            case INVALID_ARGUMENT: return new FlowInvalidArgumentException(message);
            case SPEC: return new FlowSpecException(message);
            case IO: return new FlowIOException(message);
            case FORMAT: return new FlowFormatException(message);
            case OUT_OF_MEMORY: return new FlowOutOfMemoryException(message);
            case DEVICE: return new FlowDeviceException(message);
            case UNSUPPORTED: return new FlowUnsupportedException(message);
            case NUMERIC: return new FlowNumericException(message);
            default: return new FlowException(status, message);
        }
    }
}
