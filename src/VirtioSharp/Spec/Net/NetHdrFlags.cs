namespace VirtioSharp.Spec.Net;

/// <summary><c>virtio_net_hdr.flags</c> (virtio 1.2 §5.1.6).</summary>
[Flags]
public enum NetHdrFlags : byte
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>VIRTIO_NET_HDR_F_NEEDS_CSUM: csum_start/csum_offset say where a partial checksum is completed.</summary>
    NeedsCsum = 1,
    /// <summary>VIRTIO_NET_HDR_F_DATA_VALID: the device validated the checksum (receive only).</summary>
    DataValid = 2,
    /// <summary>VIRTIO_NET_HDR_F_RSC_INFO: coalescing info in csum fields (receive only, GUEST_RSC).</summary>
    RscInfo = 4,
}
