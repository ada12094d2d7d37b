using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Interop;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Net.Tap;

/// <summary>
/// A <see cref="INetPort"/> on a Linux TAP interface (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): the virtio-net header is the
/// kernel's own format, so frames go between the TAP and the guest's buffers with one readv/writev each and no copy of
/// the payload in between. Non-blocking; the receive queue's owner thread polls <see cref="ReadableHandle"/>.
/// </summary>
public sealed class TapPort : INetPort, IDisposable
{
    private const int MaxVectors = 1 + 256;
    private readonly TapDevice _tap;
    private long _readErrors, _writeErrors;

    private TapPort(TapDevice tap) => _tap = tap;

    /// <summary>
    /// Attaches to TAP <paramref name="name"/> if it exists (e.g. <c>ip tuntap add dev NAME mode tap</c>; a
    /// <c>multi_queue</c> one needs <paramref name="multiQueue"/>) or creates it (CAP_NET_ADMIN). Throws
    /// <see cref="IOException"/> saying why when the kernel refuses.
    /// </summary>
    public static TapPort Open(string name, bool multiQueue = false) => new(TapDevice.Open(name, multiQueue));

    /// <summary>The interface name.</summary>
    public string Name => _tap.Name;
    /// <summary>Reads that failed with an error other than "nothing waiting" (each loses one frame).</summary>
    public long ReadErrors => Interlocked.Read(ref _readErrors);
    /// <summary>Writes the kernel refused (e.g. the interface is down, a malformed GSO header).</summary>
    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    /// <summary>The kernel carries every checksum and segmentation offload in the header.</summary>
    public ulong OffloadFeatures => MemoryNetPort.AllOffloads;
    /// <inheritdoc/>
    public SafeHandle? ReadableHandle => _tap.Handle;
    /// <inheritdoc/>
    public void SetReceiveWakeup(Action? wake) { }

    /// <summary>TUNSETOFFLOAD: the kernel hands us only what the guest negotiated (GUEST_CSUM, GUEST_TSO4/6, ECN, UFO).</summary>
    public void SetOffloads(ulong features)
    {
        bool Has(int b) => VirtioFeature.Has(features, b);
        uint f = 0;
        if (Has(NetFeature.GuestCsum))
        {
            f |= LibC.TUN_F_CSUM;
            if (Has(NetFeature.GuestTso4)) f |= LibC.TUN_F_TSO4;
            if (Has(NetFeature.GuestTso6)) f |= LibC.TUN_F_TSO6;
            if (Has(NetFeature.GuestEcn)) f |= LibC.TUN_F_TSO_ECN;
            if (Has(NetFeature.GuestUfo)) f |= LibC.TUN_F_UFO;
        }
        _tap.SetOffload(f);
    }

    /// <inheritdoc/>
    public unsafe bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame)
    {
        if (frame.Length + 1 > MaxVectors) { Interlocked.Increment(ref _writeErrors); return false; }
        byte* hb = stackalloc byte[TapDevice.VnetHeaderSize];
        header.Write(new Span<byte>(hb, TapDevice.VnetHeaderSize));
        var iov = stackalloc LibC.IoVec[frame.Length + 1];
        iov[0] = new LibC.IoVec { Base = hb, Len = TapDevice.VnetHeaderSize };
        long total = TapDevice.VnetHeaderSize;
        for (int i = 0; i < frame.Length; i++)
        {
            iov[i + 1] = new LibC.IoVec { Base = (void*)frame[i].Base, Len = frame[i].Length };
            total += (long)frame[i].Length;
        }
        // One write is one frame; the TAP never takes part of one.
        nint n = _tap.WriteV(iov, frame.Length + 1);
        if (n == total) return true;
        Interlocked.Increment(ref _writeErrors);
        return false;
    }

    /// <inheritdoc/>
    public unsafe int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header)
    {
        header = default;
        if (destination.Length + 1 > MaxVectors) return -1;
        byte* hb = stackalloc byte[TapDevice.VnetHeaderSize];
        var iov = stackalloc LibC.IoVec[destination.Length + 1];
        iov[0] = new LibC.IoVec { Base = hb, Len = TapDevice.VnetHeaderSize };
        for (int i = 0; i < destination.Length; i++)
            iov[i + 1] = new LibC.IoVec { Base = (void*)destination[i].Base, Len = destination[i].Length };
        nint n = _tap.ReadV(iov, destination.Length + 1);
        if (n == -LibC.EAGAIN) return 0;
        // An error (a frame larger than the buffers is dropped by the kernel with EFAULT/EINVAL) or a frame shorter than
        // the header the TAP was told to write.
        if (n < TapDevice.VnetHeaderSize)
        {
            Interlocked.Increment(ref _readErrors);
            return -1;
        }
        header = VirtioNetHdr.Parse(new ReadOnlySpan<byte>(hb, TapDevice.VnetHeaderSize)) with { NumBuffers = 0 };
        return (int)(n - TapDevice.VnetHeaderSize);
    }

    /// <summary>Closes the TAP descriptor.</summary>
    public void Dispose() => _tap.Dispose();
}
