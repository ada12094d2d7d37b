namespace VirtioSharp.Interop;

/// <summary>An eventfd (kick, call, err): 8-byte counter writes and reads.</summary>
internal sealed unsafe class EventFd : IDisposable
{
    public EventFd(SafeFd fd) => Handle = fd;

    public SafeFd Handle { get; }

    public static EventFd Create(bool nonBlocking = false)
    {
        int fd = LibC.EventFd(0, LibC.EFD_CLOEXEC | (nonBlocking ? LibC.EFD_NONBLOCK : 0));
        if (fd < 0) throw new IOException($"eventfd failed: {LibC.Describe(LibC.Errno)}");
        return new EventFd(new SafeFd(fd));
    }

    /// <summary>Adds 1 to the counter (wakes a waiter). Errors are ignored: a closed peer just misses the signal.</summary>
    public void Signal()
    {
        ulong one = 1;
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            LibC.Write(Handle.Fd, &one, 8);
        }
        catch (ObjectDisposedException) { }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>Reads and clears the counter (non-blocking fds return 0 when nothing is pending).</summary>
    public ulong Drain()
    {
        ulong v = 0;
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            return LibC.Read(Handle.Fd, &v, 8) == 8 ? v : 0;
        }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>
    /// Reads and clears the counter without ever blocking, even on a peer's fd that the peer made blocking again (the
    /// O_NONBLOCK flag is in the open file it shares): RWF_NOWAIT, or a plain read on kernels before 5.12.
    /// Returns 0 on success, otherwise the errno (EAGAIN: nothing pending).
    /// </summary>
    public int Read(out ulong value)
    {
        ulong v = 0;
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            var iov = new LibC.IoVec { Base = &v, Len = 8 };
            nint n = LibC.PReadV2(Handle.Fd, &iov, 1, -1, LibC.RWF_NOWAIT);
            if (n < 0 && LibC.Errno == LibC.EOPNOTSUPP) n = LibC.Read(Handle.Fd, &v, 8);
            value = v;
            return n == 8 ? 0 : n < 0 ? LibC.Errno : LibC.EINVAL;
        }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>Clears the counter if it is set; never blocks (see <see cref="Read"/>).</summary>
    public void DrainIfReadable()
    {
        try { Read(out _); }
        catch (ObjectDisposedException) { }
    }

    /// <summary>Waits until one of <paramref name="fds"/> is readable; returns its index, -1 on timeout.</summary>
    public static int WaitAny(ReadOnlySpan<SafeFd> fds, int timeoutMs)
    {
        Span<LibC.PollFd> p = stackalloc LibC.PollFd[fds.Length];
        for (int i = 0; i < fds.Length; i++) p[i] = new LibC.PollFd { Fd = fds[i].Fd, Events = LibC.POLLIN };
        while (true)
        {
            int r;
            fixed (LibC.PollFd* pp = p) r = LibC.Poll(pp, (nuint)p.Length, timeoutMs);
            if (r < 0)
            {
                if (LibC.Errno == LibC.EINTR) continue;
                throw new IOException($"poll failed: {LibC.Describe(LibC.Errno)}");
            }
            if (r == 0) return -1;
            for (int i = 0; i < p.Length; i++) if (p[i].REvents != 0) return i;
        }
    }

    public void Dispose() => Handle.Dispose();
}
