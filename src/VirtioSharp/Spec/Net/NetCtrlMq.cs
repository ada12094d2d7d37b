namespace VirtioSharp.Spec.Net;

/// <summary>VIRTIO_NET_CTRL_MQ commands (virtio 1.2 §5.1.6.5.5).</summary>
public static class NetCtrlMq
{
    /// <summary>VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: <c>le16 virtqueue_pairs</c>, 1 to max_virtqueue_pairs.</summary>
    public const byte VqPairsSet = 0;
    /// <summary>The fewest pairs VQ_PAIRS_SET may ask for.</summary>
    public const int VqPairsMin = 1;
}
