package org.flowlib;

/** The library ran out of memory. */
public class FlowOutOfMemoryException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowOutOfMemoryException(String message) {
        super(Status.OUT_OF_MEMORY, message);
    }
}
