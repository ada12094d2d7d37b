using System.Text;

namespace VirtioSharp.Interop;

/// <summary>
/// A Linux TAP interface opened through /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, non-blocking and
/// close-on-exec: every frame read or written is preceded by a virtio-net header of <see cref="VnetHeaderSize"/> bytes.
/// TUNSETIFF attaches to an interface of that name that already exists (made by an administrator with
/// <c>ip tuntap add dev NAME mode tap</c>) or creates one, which disappears when the descriptor closes.
/// </summary>
internal sealed class TapDevice : IDisposable
{
    /// <summary>The virtio-net header with num_buffers (virtio_net_hdr_v1 / _mrg_rxbuf).</summary>
    public const int VnetHeaderSize = 12;

    private TapDevice(SafeFd fd, string name) { Handle = fd; Name = name; }

    /// <summary>The descriptor (readable while frames wait).</summary>
    public SafeFd Handle { get; }
    /// <summary>The interface name the kernel gave it.</summary>
    public string Name { get; }

    /// <summary>Opens (or creates) TAP <paramref name="name"/>; <paramref name="multiQueue"/> for an interface made with multi_queue.</summary>
    public static unsafe TapDevice Open(string name, bool multiQueue = false)
    {
        var bytes = Encoding.ASCII.GetBytes(name);
        if (bytes.Length == 0 || bytes.Length >= LibC.IFNAMSIZ || name.Any(c => c is '/' or ' ' or ':' || char.IsControl(c)))
            throw new ArgumentException($"'{name}' is not an interface name (1 to 15 characters, no '/', ':' or spaces)", nameof(name));
        int fd = LibC.Open("/dev/net/tun", LibC.O_RDWR | LibC.O_NONBLOCK | LibC.O_CLOEXEC, 0);
        if (fd < 0) throw new IOException($"cannot open /dev/net/tun: {LibC.Describe(LibC.Errno)} (needs the tun module and CAP_NET_ADMIN, or a TAP owned by this user)");
        var h = new SafeFd(fd);
        try
        {
            LibC.IfReq req = default;
            for (int i = 0; i < bytes.Length; i++) req.Name[i] = bytes[i];
            req.Flags = (short)(LibC.IFF_TAP | LibC.IFF_NO_PI | LibC.IFF_VNET_HDR | (multiQueue ? LibC.IFF_MULTI_QUEUE : 0));
            if (LibC.Ioctl(fd, LibC.TUNSETIFF, &req) != 0)
            {
                int e = LibC.Errno;
                throw new IOException($"TUNSETIFF {name}: {LibC.Describe(e)}" + (e == LibC.EINVAL
                    ? " (an interface of that name exists but is not a TAP, or its multi_queue setting differs)"
                    : e == LibC.EBUSY ? " (another process has the single-queue TAP open)" : e == LibC.EPERM ? " (needs CAP_NET_ADMIN or the TAP's owner)" : ""));
            }
            int size = VnetHeaderSize;
            if (LibC.Ioctl(fd, LibC.TUNSETVNETHDRSZ, &size) != 0)
                throw new IOException($"TUNSETVNETHDRSZ {name}: {LibC.Describe(LibC.Errno)}");
            int len = 0;
            while (len < LibC.IFNAMSIZ && req.Name[len] != 0) len++;
            return new TapDevice(h, Encoding.ASCII.GetString(req.Name, len));
        }
        catch
        {
            h.Dispose();
            throw;
        }
    }

    /// <summary>TUNSETOFFLOAD: which TUN_F_* offloads frames read from the TAP may carry.</summary>
    public unsafe void SetOffload(uint flags)
    {
        if (LibC.Ioctl(Handle.Fd, LibC.TUNSETOFFLOAD, (void*)(nuint)flags) != 0)
            throw new IOException($"TUNSETOFFLOAD 0x{flags:x} on {Name}: {LibC.Describe(LibC.Errno)}");
    }

    /// <summary>readv: bytes read, or -errno (EAGAIN: nothing waiting).</summary>
    public unsafe nint ReadV(LibC.IoVec* iov, int count)
    {
        nint n = LibC.ReadV(Handle.Fd, iov, count);
        return n >= 0 ? n : -LibC.Errno;
    }

    /// <summary>writev: bytes written, or -errno.</summary>
    public unsafe nint WriteV(LibC.IoVec* iov, int count)
    {
        nint n = LibC.WriteV(Handle.Fd, iov, count);
        return n >= 0 ? n : -LibC.Errno;
    }

    /// <summary>Closes the descriptor (a TAP this process created goes away with it).</summary>
    public void Dispose() => Handle.Dispose();
}
