"""HTTP pieces the API (`autan.server`) and the chat app (`autan.web`) share: the error envelope,
who may call what (`auth`), and what every request passes first (`guard`)."""
