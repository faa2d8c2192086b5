package org.flowlib;

/** The device failed or is absent. */
public class FlowDeviceException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowDeviceException(String message) {
        super(Status.DEVICE, message);
    }
}
