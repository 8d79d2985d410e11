/*
 * dsi_list.h - an intrusive circular doubly-linked list (as UCX's ucs_list and Linux's list_head).
 *
 * A record embeds a dsi_list_t and is linked through it; the list head is a dsi_list_t of its
 * own, initialised to point at itself (empty). Nothing allocates: linking and unlinking are O(1)
 * pointer moves, so lists of records that come from pools cost nothing on hot paths.
 */
#ifndef DSI_LIST_H
#define DSI_LIST_H

#include <stddef.h>

typedef struct dsi_list {
    struct dsi_list *prev, *next;
} dsi_list_t;

/* The record that holds `ptr`, a pointer to its member `member`. */
#define dsi_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* An empty list (or a record not on any list). */
static inline void dsi_list_init(dsi_list_t *head)
{
    head->prev = head->next = head;
}

static inline int dsi_list_is_empty(const dsi_list_t *head)
{
    return head->next == head;
}

static inline void dsi_list_insert_after(dsi_list_t *pos, dsi_list_t *elem)
{
    elem->prev = pos;
    elem->next = pos->next;
    pos->next->prev = elem;
    pos->next = elem;
}

/* Append (FIFO order with dsi_list_pop_front). */
static inline void dsi_list_push_back(dsi_list_t *head, dsi_list_t *elem)
{
    dsi_list_insert_after(head->prev, elem);
}

static inline void dsi_list_push_front(dsi_list_t *head, dsi_list_t *elem)
{
    dsi_list_insert_after(head, elem);
}

/* Unlinks elem from whatever list holds it; elem is left pointing at itself (unlinked). */
static inline void dsi_list_remove(dsi_list_t *elem)
{
    elem->prev->next = elem->next;
    elem->next->prev = elem->prev;
    dsi_list_init(elem);
}

/* The first element, or NULL when empty. */
static inline dsi_list_t *dsi_list_head(const dsi_list_t *head)
{
    return dsi_list_is_empty(head) ? NULL : head->next;
}

/* Unlinks and returns the first element, or NULL when empty. */
static inline dsi_list_t *dsi_list_pop_front(dsi_list_t *head)
{
    dsi_list_t *e = dsi_list_head(head);
    if (e != NULL)
        dsi_list_remove(e);
    return e;
}

/* Moves every element of `from` to the end of `to`, in order; `from` is left empty. */
static inline void dsi_list_splice_back(dsi_list_t *to, dsi_list_t *from)
{
    if (dsi_list_is_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    dsi_list_init(from);
}

/* for (type *elem in head): the body must not unlink elem (use the _safe form for that). */
#define dsi_list_for_each(elem, head, type, member)                                          \
    for (type *elem = dsi_container_of((head)->next, type, member); &elem->member != (head); \
         elem = dsi_container_of(elem->member.next, type, member))

/* The same, but the body may unlink (or free) elem: the next element is read before the body. */
#define dsi_list_for_each_safe(elem, head, type, member)                                      \
    for (type *elem = dsi_container_of((head)->next, type, member),                           \
              *elem##_next_ = dsi_container_of(elem->member.next, type, member);              \
         &elem->member != (head);                                                             \
         elem = elem##_next_, elem##_next_ = dsi_container_of(elem->member.next, type, member))

#endif
