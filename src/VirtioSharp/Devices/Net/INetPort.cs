using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Devices.Net;

/// <summary>
/// Where a <see cref="NetDevice{TMem}"/>'s frames go and come from (a TAP device, an in-memory loopback, a switch port).
/// Frames move as host vectors: on transmit they point into the guest's buffers (or a device buffer on spaces that only
/// copy), on receive the port writes straight into them, so a frame is copied once. The virtio-net header travels beside
/// the frame as metadata, already validated against the negotiated features.
/// </summary>
/// <remarks>
/// <see cref="Transmit"/> may be called from several threads at once (transmit queues' owners, and a transport
/// announcing the guest after a migration, <see cref="IRarpAnnouncer"/>); <see cref="Receive"/> only
/// from the one receive queue that serves this port. Neither may block.
/// </remarks>
public interface INetPort
{
    /// <summary>virtio-net offload bits (<see cref="NetFeature"/>: CSUM, GUEST_CSUM, HOST_/GUEST_ TSO4/TSO6/ECN/UFO) the port can carry.</summary>
    ulong OffloadFeatures { get; }

    /// <summary>
    /// A descriptor that is readable while frames wait (polled by the receive queue's owner thread), or null: then the
    /// port calls the action given to <see cref="SetReceiveWakeup"/> when a frame arrives.
    /// </summary>
    SafeHandle? ReadableHandle { get; }

    /// <summary>Any thread may later call <paramref name="wake"/> when frames arrive (null: stop calling).</summary>
    void SetReceiveWakeup(Action? wake);

    /// <summary>
    /// The driver accepted <paramref name="features"/>: deliver only what it can take (e.g. no GSO frames without
    /// GUEST_TSO4, no partial checksums without GUEST_CSUM; a TAP sets TUNSETOFFLOAD). Throws <see cref="IOException"/>
    /// when it cannot; the device then refuses the features (FEATURES_OK is not set).
    /// </summary>
    void SetOffloads(ulong features);

    /// <summary>Sends one frame (<paramref name="frame"/>: host memory, valid for this call). False: the port dropped it.</summary>
    bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame);

    /// <summary>
    /// Moves the next waiting frame into <paramref name="destination"/> and returns its length with its header
    /// (num_buffers is the device's); 0 when no frame waits; -1 when a frame was lost (it did not fit, or the port
    /// failed), after which the caller may try again.
    /// </summary>
    int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header);
}
