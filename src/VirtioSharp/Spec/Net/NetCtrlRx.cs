namespace VirtioSharp.Spec.Net;

/// <summary>VIRTIO_NET_CTRL_RX commands (virtio 1.2 §5.1.6.5.1); each takes one byte, 0 off and 1 on.</summary>
public static class NetCtrlRx
{
    /// <summary>VIRTIO_NET_CTRL_RX_PROMISC: receive every frame.</summary>
    public const byte Promisc = 0;
    /// <summary>VIRTIO_NET_CTRL_RX_ALLMULTI: receive every multicast frame.</summary>
    public const byte AllMulti = 1;
}
