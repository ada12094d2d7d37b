namespace VirtioSharp.Spec.Net;

/// <summary>Bits of the config <c>status</c> field (virtio 1.2 §5.1.4).</summary>
[Flags]
public enum NetStatus : ushort
{
    /// <summary>Link down, nothing to announce.</summary>
    None = 0,
    /// <summary>VIRTIO_NET_S_LINK_UP.</summary>
    LinkUp = 1,
    /// <summary>VIRTIO_NET_S_ANNOUNCE (GUEST_ANNOUNCE).</summary>
    Announce = 2,
}
