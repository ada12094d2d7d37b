namespace VirtioSharp.Spec.Net;

/// <summary>The control command's ack byte, written by the device (virtio 1.2 §5.1.6.5).</summary>
public static class NetCtrlAck
{
    /// <summary>VIRTIO_NET_OK.</summary>
    public const byte Ok = 0;
    /// <summary>VIRTIO_NET_ERR.</summary>
    public const byte Err = 1;
}
